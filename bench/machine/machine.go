// Package machine describes the host a benchmark ran on, so that numbers
// are never read without the cores, toolchain and CPU that produced them.
package machine

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Info is the part of the host that changes latency numbers.
type Info struct {
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	GoVersion  string `json:"go_version"`
	CPUModel   string `json:"cpu_model"`
}

// Current reads the running host. The CPU model comes from /proc/cpuinfo
// where it exists and is "unknown" elsewhere.
func Current() Info {
	model := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := CPUModel(data); m != "" {
			model = m
		}
	}
	return Info{
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		GoVersion:  runtime.Version(),
		CPUModel:   model,
	}
}

// CPUModel returns the first "model name" (x86) or "Model"/"CPU part"
// (arm) value of a /proc/cpuinfo text, or "".
func CPUModel(cpuinfo []byte) string {
	fallback := ""
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "model name":
			return val
		case "Model", "CPU part":
			if fallback == "" {
				fallback = val
			}
		}
	}
	return fallback
}

// String is the one-line form printed above result tables.
func (i Info) String() string {
	return strings.Join([]string{
		i.CPUModel,
		strconv.Itoa(i.Cores) + " cores (GOMAXPROCS " + strconv.Itoa(i.GOMAXPROCS) + ")",
		i.GOOS + "/" + i.GOARCH,
		i.GoVersion,
	}, ", ")
}
