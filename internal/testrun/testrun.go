// Package testrun runs a component's background loop for the length of a
// test.
package testrun

import (
	"context"
	"sync"
	"testing"
)

// Background starts run(ctx) on a goroutine. The returned stop cancels ctx
// and waits for run to return; it may be called more than once, and the
// test's cleanup calls it too, so no loop outlives its test.
func Background(t testing.TB, run func(ctx context.Context)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}
