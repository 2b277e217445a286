package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// postgresCPU returns the CPU time (user + system, nanoseconds) used so far
// by each local Postgres backend serving database name, by process id. A
// backend's process title (its /proc cmdline) is "postgres: USER DATABASE
// HOST(PORT) STATE", after the cluster name if the server has one. Nil when no such process can be read: the server is
// on another machine, or there is no /proc.
//
// Why: on a machine shared with other work the bench's wall-clock rate
// moves with the load, while the CPU Postgres spends per batch moves with
// what the control plane asks of it.
func postgresCPU(name string) map[int]int64 {
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil
	}
	var out map[int]int64
	for _, dir := range procs {
		cmd, err := os.ReadFile(dir + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) {
			continue
		}
		// The title may be padded with NULs, and a server with a
		// cluster_name puts it first ("postgres: 15/main: USER ...").
		f := strings.Fields(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		if !slices.Contains(f[1:min(len(f), 4)], name) {
			continue
		}
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state is the
		// first, utime and stime the 12th and 13th.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f = strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		user, err1 := strconv.ParseInt(f[11], 10, 64)
		sys, err2 := strconv.ParseInt(f[12], 10, 64)
		pid, err3 := strconv.Atoi(filepath.Base(dir))
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if out == nil {
			out = map[int]int64{}
		}
		out[pid] = (user + sys) * (1e9 / clockTicks)
	}
	return out
}

// postgresCPUSince is the CPU the backends of after used since before (a
// backend started in between counts from zero). ok is false when after is
// nil, as when the server is not local.
func postgresCPUSince(before, after map[int]int64) (ns int64, ok bool) {
	for pid, t := range after {
		ns += t - before[pid]
	}
	return ns, after != nil
}
