package main

func policyCommands() []command {
	return nil
}
