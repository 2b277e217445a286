package testrun

import (
	"context"
	"testing"
)

func TestBackgroundStopWaits(t *testing.T) {
	ended := false
	stop := Background(t, func(ctx context.Context) {
		<-ctx.Done()
		ended = true
	})
	stop()
	if !ended {
		t.Fatal("stop returned before run did")
	}
	stop() // a second stop, and the cleanup's, are no-ops
}

func TestBackgroundStopsAtCleanup(t *testing.T) {
	var ended bool
	t.Run("inner", func(t *testing.T) {
		Background(t, func(ctx context.Context) {
			<-ctx.Done()
			ended = true
		})
	})
	if !ended {
		t.Fatal("the loop outlived its test")
	}
}
