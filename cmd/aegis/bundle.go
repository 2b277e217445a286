package main

func bundleCommands() []command {
	return nil
}
