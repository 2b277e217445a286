//go:build unix

package main

import "syscall"

// processCPU returns the user + system CPU time this process has used, in
// nanoseconds (0 if the kernel does not say).
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
