package filterbench

import "time"

// now is the report's start time, truncated to the second it is named by.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }
