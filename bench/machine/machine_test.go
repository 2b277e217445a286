package machine

import (
	"runtime"
	"strings"
	"testing"
)

func TestCPUModel(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"x86", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n", "AMD EPYC 7B13"},
		{"arm", "processor\t: 0\nCPU part\t: 0xd0c\nModel\t: Raspberry Pi\n", "0xd0c"},
		{"empty", "", ""},
		{"garbage", "no colon here\n\x00\xff", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := CPUModel([]byte(c.in)); got != c.want {
				t.Errorf("CPUModel = %q, want %q", got, c.want)
			}
		})
	}
}

func TestCurrent(t *testing.T) {
	i := Current()
	if i.Cores != runtime.NumCPU() || i.GOOS != runtime.GOOS || i.GoVersion != runtime.Version() || i.CPUModel == "" {
		t.Fatalf("Current() = %+v", i)
	}
	if s := i.String(); !strings.Contains(s, runtime.Version()) || !strings.Contains(s, "cores") {
		t.Errorf("String() = %q", s)
	}
}

// FuzzCPUModel: any bytes in place of /proc/cpuinfo give a single line
// (or nothing), never a panic.
func FuzzCPUModel(f *testing.F) {
	f.Add([]byte("model name\t: AMD EPYC\n"))
	f.Add([]byte("Model: x\nCPU part: y\n"))
	f.Add([]byte(":\n::\nmodel name"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if m := CPUModel(data); strings.ContainsAny(m, "\n") {
			t.Fatalf("model %q spans lines", m)
		}
	})
}
