package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/xds/xdsbench"
)

// runBenchXDS measures the time from publishing a release to every node's
// ACK of it, with the xDS server in-process and simulated nodes on
// loopback mTLS.
func runBenchXDS(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("bench xds", "", `Starts the xDS server in-process (drift store on an embedded SQLite file,
or none), connects N simulated nodes over mTLS on loopback (go-control-plane's
SotW ADS client and/or raw delta streams, one connection and certificate per
node), publishes a new release and times each node's ACK of it, from the
start of the publish. Prints a table; with --json the last line is a JSON
object with nodes, acked, p50_ms, p99_ms, max_ms and machine details.
Exit code 1 when not every node ACKed within --timeout.`, io)
	o := xdsbench.Options{}
	fs.IntVar(&o.Nodes, "nodes", 100, "simulated nodes")
	fs.StringVar(&o.Mode, "mode", xdsbench.ModeMixed, "clients: sotw, delta, or mixed (half each)")
	fs.StringVar(&o.Store, "store", "sqlite", "drift store: sqlite (embedded file in a temporary directory) or none")
	fs.IntVar(&o.BundleBytes, "bundle-bytes", 64<<10, "size of the runtime bundle in the published configuration")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "how long to wait for the fleet to connect, and for the ACKs")
	asJSON := fs.Bool("json", false, "print one JSON object as the last line")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the publish phase to this file")
	rest, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(io.err, "aegis bench xds: unexpected arguments %q\n", rest)
		return exitUsage
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintf(io.err, "aegis bench xds: %v\n", err)
		return exitUsage
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(io.err, "aegis bench xds: %v\n", err)
			return exitFailure
		}
		defer f.Close()
		o.Profile = f
	}
	res, err := xdsbench.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench xds: %v\n", err)
		return exitFailure
	}
	tw := tabwriter.NewWriter(io.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "nodes\tacked\tp50 ms\tp90 ms\tp99 ms\tmax ms\tpublish ms\tserver synced ms\tCPU ms\t\n")
	fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t\n", res.Nodes, res.Acked, res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs, res.SetTenantMs, res.ServerSyncedMs, res.PublishCPUMs)
	tw.Flush()
	fmt.Fprintf(io.out, "clients %s, store %s, configuration %d bytes (bundle %d), connect+first sync %.0f ms; %d cores, GOMAXPROCS %d, %s %s/%s\n",
		res.Mode, res.Store, res.ConfigBytes, res.BundleBytes, res.ConnectMs, res.Cores, res.GOMAXPROCS, res.GoVersion, res.OS, res.Arch)
	if *asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			fmt.Fprintf(io.err, "aegis bench xds: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(io.out, string(b))
	}
	if res.Acked < res.Nodes {
		fmt.Fprintf(io.err, "aegis bench xds: %d of %d nodes did not ACK within %s\n", res.Nodes-res.Acked, res.Nodes, o.Timeout)
		return exitFailure
	}
	return exitOK
}
