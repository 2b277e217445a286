package enginebench

import (
	"bytes"
	"io"
	"time"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// now is the report's start time, truncated to the second it is named by.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }
