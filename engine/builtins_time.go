package engine

import (
	"fmt"
	"time"
)

var (
	minDateAllowed = time.Unix(0, -1<<63).UTC()
	maxDateAllowed = time.Unix(0, 1<<63-1).UTC()
	errTimeRange   = &Error{Code: CodeBuiltinError, Message: "time outside of valid range"}
)

// bTimeNowNS returns the same instant for every call in one evaluation.
func bTimeNowNS(ev *evalState, _ []Value) (Value, error) {
	if ev.nowNS == nil {
		ev.nowNS = intNumber(ev.p.now().UnixNano())
	}
	return ev.nowNS, nil
}

func nsValue(t time.Time) (Value, error) {
	if t.Before(minDateAllowed) || t.After(maxDateAllowed) {
		return nil, errTimeRange
	}
	return intNumber(t.UnixNano()), nil
}

func bTimeParseRFC3339(_ *evalState, args []Value) (Value, error) {
	s, err := argString(args, 0)
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	return nsValue(t)
}

func bTimeParseNS(_ *evalState, args []Value) (Value, error) {
	layout, value, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	if named, ok := namedLayouts[layout]; ok {
		layout = named
	}
	t, err := time.Parse(layout, value)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: err.Error()}
	}
	return nsValue(t)
}

// namedLayouts are the layout names time.parse_ns accepts besides
// reference-time layouts, as in OPA.
var namedLayouts = map[string]string{
	"ANSIC": time.ANSIC, "UnixDate": time.UnixDate, "RubyDate": time.RubyDate,
	"RFC822": time.RFC822, "RFC822Z": time.RFC822Z, "RFC850": time.RFC850,
	"RFC1123": time.RFC1123, "RFC1123Z": time.RFC1123Z, "RFC3339": time.RFC3339,
	"RFC3339Nano": time.RFC3339Nano, "Kitchen": time.Kitchen, "Stamp": time.Stamp,
	"StampMilli": time.StampMilli, "StampMicro": time.StampMicro, "StampNano": time.StampNano,
	"DateTime": time.DateTime, "DateOnly": time.DateOnly, "TimeOnly": time.TimeOnly,
}

// timeArg reads a time operand: nanoseconds since the epoch, or
// [nanoseconds, timezone name].
func timeArg(args []Value, i int) (time.Time, error) {
	loc := time.UTC
	v := args[i]
	if arr, ok := v.(*Array); ok {
		if len(arr.elems) != 2 {
			return time.Time{}, &Error{Code: CodeBuiltinError, Message: "array must have 2 elements"}
		}
		tz, ok := arr.elems[1].(stringValue)
		if !ok {
			return time.Time{}, typeErr(i+1, arr.elems[1], "string")
		}
		// Only UTC: named zones need zoneinfo from the file system, which the
		// wasm filter does not have (and Envoy does not grant the WASI calls
		// that would read it). One answer everywhere beats a policy that
		// decides differently in the CLI and in the proxy.
		if tz != "" && tz != "UTC" {
			return time.Time{}, &Error{Code: CodeBuiltinError, Message: fmt.Sprintf("time zone %q is not available: the engine knows only UTC", string(tz))}
		}
		v = arr.elems[0]
	}
	n, ok := v.(*numberValue)
	if !ok {
		return time.Time{}, typeErr(i+1, v, "number", "array")
	}
	var ns int64
	if n.isInt {
		ns = n.i
	} else {
		// OPA truncates fractional nanoseconds.
		f := numberToFloat(n)
		bi, _ := f.Int(nil)
		if !bi.IsInt64() {
			return time.Time{}, errTimeRange
		}
		ns = bi.Int64()
	}
	return time.Unix(0, ns).In(loc), nil
}

func bTimeWeekday(_ *evalState, args []Value) (Value, error) {
	t, err := timeArg(args, 0)
	if err != nil {
		return nil, err
	}
	return stringValue(t.Weekday().String()), nil
}

func bTimeDate(_ *evalState, args []Value) (Value, error) {
	t, err := timeArg(args, 0)
	if err != nil {
		return nil, err
	}
	y, m, d := t.Date()
	return arrayOf([]Value{intNumber(int64(y)), intNumber(int64(m)), intNumber(int64(d))}), nil
}

func bTimeClock(_ *evalState, args []Value) (Value, error) {
	t, err := timeArg(args, 0)
	if err != nil {
		return nil, err
	}
	h, m, s := t.Clock()
	return arrayOf([]Value{intNumber(int64(h)), intNumber(int64(m)), intNumber(int64(s))}), nil
}

func bTimeAddDate(_ *evalState, args []Value) (Value, error) {
	t, err := timeArg(args, 0)
	if err != nil {
		return nil, err
	}
	var ymd [3]int
	for i := range ymd {
		if ymd[i], err = argInt(args, i+1); err != nil {
			return nil, err
		}
	}
	return nsValue(t.AddDate(ymd[0], ymd[1], ymd[2]))
}
