package errs

import (
	"errors"
	"io"
	"testing"
)

func TestErrorf(t *testing.T) {
	err := Errorf("reading %s: %w", "bundle", io.ErrUnexpectedEOF)
	if got, want := err.Error(), "reading bundle: unexpected EOF"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("%w did not wrap")
	}
	if got := Errorf("plain").Error(); got != "plain" {
		t.Errorf("Errorf(\"plain\") = %q", got)
	}
}
