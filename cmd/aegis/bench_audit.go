package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	goio "io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/audit"
	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/evidence"
	"github.com/aegis-mesh/aegis/controlplane/nodes"
	"github.com/aegis-mesh/aegis/jcs"
	"github.com/prometheus/client_golang/prometheus"
)

// defaultBenchDSN is the local Postgres server the bench creates its
// database on when AEGIS_DATABASE_URL is unset.
const defaultBenchDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// benchResult is the last line of "aegis bench audit --json".
type benchResult struct {
	Events         int     `json:"events"`
	Nodes          int     `json:"nodes"`
	Batch          int     `json:"batch"`
	Seconds        float64 `json:"seconds"`
	EventsPerS     float64 `json:"events_per_s"`
	Lost           int     `json:"lost"`
	Duplicates     int     `json:"duplicates"`
	ResendsDeduped int     `json:"resends_deduplicated"`
	// Transactions is how many ingest transactions stored the timed
	// batches (fewer than the batches when concurrent ones were merged).
	Transactions  int64 `json:"transactions"`
	ChainVerified bool  `json:"chain_verified"`
	// GenerateS is the time spent making, chaining and signing the
	// events before the timed phase (not in Seconds).
	GenerateS        float64 `json:"generate_s"`
	ServerMSPerBatch float64 `json:"server_ms_per_batch"`
	// ProcessCPUMSPerBatch is the CPU time (user + system) of this process
	// — the senders and the control plane's HTTP handler — during the timed
	// phase, per batch; the rest of the machine's time goes to Postgres.
	ProcessCPUMSPerBatch float64 `json:"process_cpu_ms_per_batch"`
	// PostgresCPUMSPerBatch is the CPU time of the Postgres backends
	// serving the bench database during the timed phase, per batch (0
	// when the server is not on this machine). With ProcessCPUMSPerBatch
	// it is what a batch costs, which load from other work on the machine
	// moves much less than events_per_s.
	PostgresCPUMSPerBatch float64 `json:"postgres_cpu_ms_per_batch"`
	// PostgresFloor is the same number of rows written by one
	// INSERT ... SELECT into a copy of the events table, in the same run:
	// what the database alone sustains on this machine at this moment.
	PostgresFloor float64 `json:"postgres_floor_events_per_s"`
	VerifyS       float64 `json:"verify_s"`
	Database      string  `json:"database"`
	CPUs          int     `json:"cpus"`
	GOOS          string  `json:"goos"`
	GOARCH        string  `json:"goarch"`
	Go            string  `json:"go"`
}

func runBenchAudit(ctx context.Context, args []string, io stdio) int {
	fs := flagSet("bench audit", "", `
Measure audit ingest: generate N signed, hash-chained events from K
simulated nodes (real Ed25519 keys enrolled through the nodes store), send
them as batches through the real HTTP ingest API (loopback) into a fresh
Postgres database, then re-read every chain from the database and verify it
hash by hash. The database is created on the server named by
AEGIS_DATABASE_URL (default the local server) and dropped afterwards. The
last line of --json output holds events, events_per_s, lost, duplicates
and chain_verified. Exits 1 when an event is lost or a chain fails.`, io)
	n := fs.Int("events", 100000, "events to ingest in total")
	k := fs.Int("nodes", 4, "simulated nodes, one chain and one sender each")
	batch := fs.Int("batch", 1000, "events per batch")
	asJSON := fs.Bool("json", false, "print the result as JSON on the last line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the ingest phase to this file")
	dsn := fs.String("dsn", "", "Postgres server URL (default $AEGIS_DATABASE_URL or "+defaultBenchDSN+")")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	switch {
	case len(pos) != 0:
		fmt.Fprintf(io.err, "aegis bench audit: unexpected argument %q\n", pos[0])
		return exitUsage
	case *n < 1 || *k < 1 || *k > 1000 || *batch < 1 || *batch > audit.MaxBatchEvents || *n < *k:
		fmt.Fprintf(io.err, "aegis bench audit: want --events >= --nodes >= 1, --nodes <= 1000, 1 <= --batch <= %d\n", audit.MaxBatchEvents)
		return exitUsage
	}
	server := *dsn
	if server == "" {
		server = os.Getenv("AEGIS_DATABASE_URL")
	}
	if server == "" {
		server = defaultBenchDSN
	}
	res, err := benchAudit(ctx, server, *n, *k, *batch, *cpuProfile, io)
	if err != nil {
		fmt.Fprintf(io.err, "aegis bench audit: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(io.out, "ingested %d events from %d nodes in %.2fs: %.0f events/s (batches of %d, %d CPUs)\n",
		res.Events, res.Nodes, res.Seconds, res.EventsPerS, res.Batch, res.CPUs)
	fmt.Fprintf(io.out, "timed: HTTP ingest through the API; the events were generated, chained and signed before timing (%.2fs)\n", res.GenerateS)
	fmt.Fprintf(io.out, "baseline: Postgres alone writes the same rows at %.0f rows/s (INSERT ... SELECT, same indexes)\n", res.PostgresFloor)
	fmt.Fprintf(io.out, "server time per batch %.1f ms (verify, hash, store, commit); CPU per batch: this process (senders + handler) %.1f ms, Postgres backends %.1f ms\n",
		res.ServerMSPerBatch, res.ProcessCPUMSPerBatch, res.PostgresCPUMSPerBatch)
	fmt.Fprintf(io.out, "lost %d, stored twice %d, resent batches deduplicated %d events, chains verified: %v (%.2fs)\n",
		res.Lost, res.Duplicates, res.ResendsDeduped, res.ChainVerified, res.VerifyS)
	if *asJSON {
		out, _ := json.Marshal(res)
		fmt.Fprintf(io.out, "%s\n", out)
	}
	if res.Lost != 0 || res.Duplicates != 0 || !res.ChainVerified {
		return exitFailure
	}
	return exitOK
}

// tempDatabase creates a uniquely named database on server and returns its
// DSN and a function dropping it.
func tempDatabase(ctx context.Context, server string) (dsn, name string, drop func(), err error) {
	admin, err := db.Open(ctx, server)
	if err != nil {
		return "", "", nil, err
	}
	if admin.Dialect != db.Postgres {
		admin.Close()
		return "", "", nil, errors.New("the audit bench needs a postgres:// server")
	}
	var b [6]byte
	rand.Read(b[:])
	name = "aegis_bench_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		admin.Close()
		return "", "", nil, fmt.Errorf("create database: %w", err)
	}
	drop = func() {
		defer admin.Close()
		_, _ = admin.ExecContext(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	}
	u, err := url.Parse(server)
	if err != nil {
		drop()
		return "", "", nil, err
	}
	u.Path = "/" + name
	return u.String(), name, drop, nil
}

// benchNode is one simulated node: its key, credential and chain.
type benchNode struct {
	id, secret string
	key        ed25519.PrivateKey
	seq        int64
	head       [32]byte
	batches    [][]byte
}

func benchAudit(ctx context.Context, server string, total, k, batch int, cpuProfile string, io stdio) (benchResult, error) {
	res := benchResult{Events: total, Nodes: k, Batch: batch, Database: "postgres", CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()}
	dsn, dbName, drop, err := tempDatabase(ctx, server)
	if err != nil {
		return res, err
	}
	defer drop()
	d, err := db.Open(ctx, dsn)
	if err != nil {
		return res, err
	}
	defer d.Close()
	const tenant = "bench"
	h, err := startAuditHarness(ctx, d, tenant, k, io.err)
	if err != nil {
		return res, err
	}
	defer h.close()
	bn, reg, endpoint := h.nodes, h.reg, h.url+"/v1/audit/batches"

	genStart := time.Now()
	t0 := time.Now().UTC().Truncate(time.Second)
	for i, node := range bn {
		count := total / k
		if i < total%k {
			count++
		}
		for count > 0 {
			m := min(batch, count)
			body, err := node.nextBatch(tenant, m, t0)
			if err != nil {
				return res, err
			}
			node.batches = append(node.batches, body)
			count -= m
		}
	}
	res.GenerateS = time.Since(genStart).Seconds()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: k, DisableCompression: true}, Timeout: 2 * time.Minute}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0, pgCPU0 := processCPU(), postgresCPU(dbName)
	start := time.Now()
	errs := make(chan error, k)
	var wg sync.WaitGroup
	for _, node := range bn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, body := range node.batches {
				if _, _, err := postBatch(ctx, client, endpoint, node.secret, body); err != nil {
					errs <- fmt.Errorf("node %s: %w", node.id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.EventsPerS = float64(total) / res.Seconds
	batches := 0
	for _, node := range bn {
		batches += len(node.batches)
	}
	res.ProcessCPUMSPerBatch = float64(processCPU()-cpu0) / 1e6 / float64(batches)
	if ns, ok := postgresCPUSince(pgCPU0, postgresCPU(dbName)); ok {
		res.PostgresCPUMSPerBatch = float64(ns) / 1e6 / float64(batches)
	}
	res.Transactions, _ = h.store.GroupStats()
	close(errs)
	for err := range errs {
		return res, err
	}
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "aegis_audit_ingest_seconds" && len(mf.GetMetric()) == 1 {
				h := mf.GetMetric()[0].GetHistogram()
				if h.GetSampleCount() > 0 {
					res.ServerMSPerBatch = 1000 * h.GetSampleSum() / float64(h.GetSampleCount())
				}
			}
		}
	}
	// Resend each node's last batch, as after a lost reply: nothing is
	// stored twice.
	for _, node := range bn {
		acc, dup, err := postBatch(ctx, client, endpoint, node.secret, node.batches[len(node.batches)-1])
		if err != nil {
			return res, fmt.Errorf("resend: %w", err)
		}
		if acc != 0 {
			return res, fmt.Errorf("resend of node %s stored %d events again", node.id, acc)
		}
		res.ResendsDeduped += dup
	}
	vStart := time.Now()
	stored, distinct, verified, err := verifyBenchChains(ctx, d, bn)
	if err != nil {
		return res, err
	}
	res.VerifyS = time.Since(vStart).Seconds()
	if res.PostgresFloor, err = postgresFloor(ctx, d, total); err != nil {
		return res, err
	}
	res.Lost = total - distinct
	res.Duplicates = stored - distinct
	res.ChainVerified = verified
	return res, nil
}

// auditHarness is the audit API on loopback HTTP over a database (errors
// logged; the replay incidents its resends cause are expected), with k
// nodes enrolled through the nodes store (real Ed25519 keys) and an
// auditor. Its authentication stands in for the server's: a random bearer
// credential per caller maps to that caller's principal.
type auditHarness struct {
	url          string
	nodes        []*benchNode
	auditorToken string
	store        *audit.Store
	evidenceKey  ed25519.PrivateKey
	reg          *prometheus.Registry
	close        func()
}

func startAuditHarness(ctx context.Context, d *db.DB, tenant string, k int, logOut goio.Writer) (*auditHarness, error) {
	store, err := audit.OpenStore(ctx, d)
	if err != nil {
		return nil, err
	}
	ns, err := nodes.NewStore(ctx, d)
	if err != nil {
		return nil, err
	}
	h := &auditHarness{store: store, reg: prometheus.NewRegistry(), nodes: make([]*benchNode, k)}
	now := time.Now()
	principals := map[string]auth.Principal{}
	secret := func() string {
		var s [16]byte
		rand.Read(s[:])
		return hex.EncodeToString(s[:])
	}
	for i := range h.nodes {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		jt, err := ns.CreateJoinToken(ctx, tenant, "local", "edge", "bench", now, time.Hour)
		if err != nil {
			return nil, err
		}
		node, err := ns.Enroll(ctx, jt.Secret, fmt.Sprintf("bench-%d", i), priv.Public().(ed25519.PublicKey), now, func(*sql.Tx, nodes.Node) error { return nil })
		if err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
		h.nodes[i] = &benchNode{id: node.ID, secret: secret(), key: priv}
		principals[h.nodes[i].secret] = auth.Principal{Subject: node.ID, Tenant: tenant, Roles: []auth.Role{auth.RoleNode}}
	}
	h.auditorToken = secret()
	principals[h.auditorToken] = auth.Principal{Subject: "auditor", Tenant: tenant, Roles: []auth.Role{auth.RoleAuditor}}
	if _, h.evidenceKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	svc, err := audit.New(audit.Config{
		Store: store, Nodes: ns, IsUnknownNode: func(err error) bool { return errors.Is(err, nodes.ErrUnknownNode) },
		EvidenceKey: h.evidenceKey, Registerer: h.reg, Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := principals[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]; ok {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		mux.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(lis)
	h.url = "http://" + lis.Addr().String()
	h.close = func() { hs.Close() }
	return h, nil
}

// postBatch sends one batch and returns what the control plane stored.
func postBatch(ctx context.Context, client *http.Client, endpoint, secret string, body []byte) (accepted, duplicates int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	data, err := goio.ReadAll(goio.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var r struct {
		Accepted   int `json:"accepted"`
		Duplicates int `json:"duplicates"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, 0, err
	}
	return r.Accepted, r.Duplicates, nil
}

// nextBatch makes the node's next n events, already in canonical form,
// chains them and signs the batch (API.md).
func (n *benchNode) nextBatch(tenant string, count int, t0 time.Time) ([]byte, error) {
	prev := n.head
	first := n.seq + 1
	var b []byte
	b = append(b, `{"node_id":`...)
	b = jcs.AppendString(b, n.id)
	b = append(b, `,"tenant":`...)
	b = jcs.AppendString(b, tenant)
	b = append(b, `,"chain_id":`...)
	b = jcs.AppendString(b, n.id)
	b = append(b, `,"seq_first":`...)
	b = strconv.AppendInt(b, first, 10)
	b = append(b, `,"seq_last":`...)
	b = strconv.AppendInt(b, first+int64(count)-1, 10)
	b = append(b, `,"prev_hash":"`...)
	b = hex.AppendEncode(b, prev[:])
	b = append(b, `","events":[`...)
	var ev []byte
	for i := 0; i < count; i++ {
		n.seq++
		ev = benchEvent(ev[:0], n.id, tenant, n.seq, t0.Add(time.Duration(n.seq)*time.Millisecond))
		h := sha256.New()
		h.Write(n.head[:])
		h.Write(ev)
		h.Sum(n.head[:0])
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev...)
	}
	b = append(b, `],"batch_hash":"`...)
	b = hex.AppendEncode(b, n.head[:])
	b = append(b, `","signature":"`...)
	b = hex.AppendEncode(b, ed25519.Sign(n.key, n.head[:]))
	b = append(b, `"}`...)
	return b, nil
}

// benchEvent writes one decision event in canonical (sorted-key) form,
// shaped like the filter's.
func benchEvent(b []byte, node, tenant string, seq int64, t time.Time) []byte {
	agent := "agent-" + strconv.FormatInt(seq%16, 10)
	action := "allow"
	if seq%10 == 0 {
		action = "deny"
	}
	b = append(b, `{"action":"`...)
	b = append(b, action...)
	b = append(b, `","agent":`...)
	b = jcs.AppendString(b, agent)
	b = append(b, `,"approval_id":"","chain":[`...)
	b = jcs.AppendString(b, agent)
	b = append(b, `],"cost_micro_usd":2500,"decision_ns":`...)
	b = strconv.AppendInt(b, 1500+seq%700, 10)
	b = append(b, `,"id":`...)
	b = jcs.AppendString(b, node+"-"+strconv.FormatInt(seq, 10))
	b = append(b, `,"input_digest":"9f2c4be0a1d3e5f7091b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071","node_id":`...)
	b = jcs.AppendString(b, node)
	b = append(b, `,"override_jti":"","policy_revision":42,"reasons":[],"redactions":[],"rule_ids":["payments.allow_small"],"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"shadow_action":"","span_id":"00f067aa0ba902b7","status":200,"tenant":`...)
	b = jcs.AppendString(b, tenant)
	b = append(b, `,"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","tool":"payments.create","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`...)
	return b
}

// postgresFloor times one INSERT ... SELECT of n event-sized rows into a
// copy of audit_events (same columns and indexes).
func postgresFloor(ctx context.Context, d *db.DB, n int) (float64, error) {
	if _, err := d.ExecContext(ctx, `CREATE TABLE bench_floor (LIKE audit_events INCLUDING ALL)`); err != nil {
		return 0, fmt.Errorf("baseline table: %w", err)
	}
	var body int
	if err := d.QueryRowContext(ctx, `SELECT coalesce(avg(length(body)), 0)::int FROM audit_events`).Scan(&body); err != nil {
		return 0, fmt.Errorf("baseline: %w", err)
	}
	start := time.Now()
	if _, err := d.ExecContext(ctx, `INSERT INTO bench_floor (chain_key, seq, time_us, policy_revision, cost_micro_usd, received_us, tenant, id, agent, tool, action, hash, body)
		SELECT 1, g, g, 42, 2500, 0, 'bench', 'n-' || g, 'agent-' || (g % 16), 'payments.create', 'allow', md5(g::text) || md5(g::text), repeat('x', $1)
		FROM generate_series(1, $2::int) g`, body, n); err != nil {
		return 0, fmt.Errorf("baseline: %w", err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// verifyBenchChains re-reads every chain from the database and recomputes
// it: each stored body must hash, from its predecessor, to the stored hash,
// seqs must run from 1 without a hole, and the last hash must be the
// node's own head.
func verifyBenchChains(ctx context.Context, d *db.DB, bn []*benchNode) (stored, distinct int, ok bool, err error) {
	if err := d.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT id) FROM audit_events`).Scan(&stored, &distinct); err != nil {
		return 0, 0, false, err
	}
	ok = true
	for _, node := range bn {
		rows, err := d.QueryContext(ctx, `SELECT e.seq, e.hash, e.body FROM audit_events e JOIN audit_chains c USING (chain_key) WHERE c.node_id = $1 AND c.chain_id = $1 ORDER BY e.seq`, node.id)
		if err != nil {
			return 0, 0, false, err
		}
		var prev [32]byte
		var want int64 = 1
		for rows.Next() {
			var seq int64
			var h string
			var body []byte
			if err := rows.Scan(&seq, &h, &body); err != nil {
				rows.Close()
				return 0, 0, false, err
			}
			sum, _, err := evidence.EventHash(prev, body)
			if err != nil || seq != want || hex.EncodeToString(sum[:]) != h {
				ok = false
				break
			}
			prev = sum
			want++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, 0, false, err
		}
		if prev != node.head || want-1 != node.seq {
			ok = false
		}
	}
	return stored, distinct, ok, nil
}
