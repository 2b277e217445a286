package pairs

import (
	"errors"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kvs  []KV
	}{
		{"empty", nil},
		{"one", []KV{{":path", "/x"}}},
		{"empty strings", []KV{{"", ""}, {"a", ""}}},
		{"repeated keys", []KV{{"a", "1"}, {"a", "2"}, {"b", "3"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, Size(tc.kvs))
			Encode(b, tc.kvs)
			got, err := Decode(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.kvs) || (len(got) > 0 && !reflect.DeepEqual(got, tc.kvs)) {
				t.Fatalf("got %v, want %v", got, tc.kvs)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := make([]byte, Size([]KV{{"k", "v"}}))
	Encode(good, []KV{{"k", "v"}})
	tests := []struct {
		name string
		in   []byte
	}{
		{"short count", []byte{1, 0}},
		{"count too large", []byte{0xff, 0xff, 0xff, 0xff}},
		{"lengths past end", []byte{1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 'a', 0}},
		{"key not terminated", func() []byte { b := append([]byte(nil), good...); b[13] = 'x'; return b }()},
		{"value not terminated", func() []byte { b := append([]byte(nil), good...); b[15] = 'x'; return b }()},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"huge key length", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(nil, tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%v) = %v, want ErrMalformed", tc.in, err)
			}
		})
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	kvs := []KV{{":method", "GET"}, {"content-type", "application/json"}}
	dst := make([]byte, Size(kvs))
	if n := testing.AllocsPerRun(100, func() { Encode(dst, kvs) }); n != 0 {
		t.Fatalf("Encode allocates %v times", n)
	}
}

func FuzzDecode(f *testing.F) {
	for _, kvs := range [][]KV{nil, {{"a", "b"}}, {{":path", "/"}, {"x", ""}}} {
		b := make([]byte, Size(kvs))
		Encode(b, kvs)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := Decode(nil, b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes (an empty input is
		// the one exception: it decodes to an empty map).
		if len(b) == 0 {
			return
		}
		out := make([]byte, Size(kvs))
		Encode(out, kvs)
		if string(out) != string(b) {
			t.Fatalf("re-encoding %x gave %x", b, out)
		}
	})
}
