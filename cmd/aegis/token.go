package main

func tokenCommands() []command {
	return nil
}
