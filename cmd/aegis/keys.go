package main

func keysCommands() []command {
	return nil
}
