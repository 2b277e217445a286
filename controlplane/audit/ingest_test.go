package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
)

func TestIngestAndQuery(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		nodes := &nodeKeys{}
		e := newEnv(t, d, nodes, nil)
		p := newProducer(t, "node-1", "acme", "node-1/vm-a")
		nodes.enroll(p)
		cost := func(micro int64) evOpt { return func(m map[string]any) { m["cost_micro_usd"] = micro } }

		b1 := p.next(t, 3, cost(250000))
		if r := e.send(p, b1); r.status != 200 || r.json(t)["accepted"] != float64(3) {
			t.Fatalf("first batch: %d %s", r.status, r.body)
		}
		b2 := p.next(t, 2, cost(1000000), func(m map[string]any) { m["tool"] = "refunds"; m["agent"] = "agent-2" })
		if r := e.send(p, b2); r.status != 200 {
			t.Fatalf("second batch: %d %s", r.status, r.body)
		}
		// Denied calls cost nothing even when the event names a cost.
		b3 := p.next(t, 1, cost(5000000), func(m map[string]any) { m["action"] = "deny" })
		if r := e.send(p, b3); r.status != 200 {
			t.Fatalf("third batch: %d %s", r.status, r.body)
		}
		// The resend of a whole batch, and a batch overlapping stored
		// events, store nothing twice.
		if r := e.send(p, b1); r.status != 200 || r.json(t)["accepted"] != float64(0) || r.json(t)["duplicates"] != float64(3) {
			t.Fatalf("replayed batch: %d %s", r.status, r.body)
		}
		evs := p.events(t, 2)
		overlap := p.batch(append(append([]json.RawMessage{}, b3.Events...), evs...))
		overlap.SeqFirst, overlap.PrevHash = b3.SeqFirst, b3.PrevHash
		if r := e.send(p, overlap); r.status != 200 || r.json(t)["accepted"] != float64(2) || r.json(t)["duplicates"] != float64(1) {
			t.Fatalf("overlapping batch: %d %s", r.status, r.body)
		}
		if n := e.count(`SELECT count(*) FROM audit_events`); n != 8 {
			t.Fatalf("%d events stored, want 8", n)
		}
		// The whole-batch replay is recorded; the overlapping resend that
		// brought new events is not.
		if n, r := e.count(`SELECT count(*) FROM audit_incidents`), e.incidents(CodeReplay); n != 1 || r != 1 {
			t.Fatalf("%d incidents (%d replays), want the one replay", n, r)
		}

		spent, err := e.store.SpentToday(context.Background(), "acme", baseTime)
		if err != nil {
			t.Fatal(err)
		}
		if spent["agent-1"] != 0.75 || spent["agent-2"] != 2 || len(spent) != 2 {
			t.Fatalf("spent %v", spent)
		}
		if other, _ := e.store.SpentToday(context.Background(), "acme", baseTime.AddDate(0, 0, 1)); len(other) != 0 {
			t.Fatalf("spend on the next day: %v", other)
		}

		for _, tc := range []struct {
			query string
			want  int
		}{
			{"", 8},
			{"&tool=refunds", 2},
			{"&agent=agent-2", 2},
			{"&action=deny", 1},
			{"&decision_id=node-1-node-1/vm-a-4", 1},
			{"&policy_revision=7", 8},
			{"&policy_revision=8", 0},
			{"&from=" + baseTime.Add(3*time.Second).Format(time.RFC3339) + "&to=" + baseTime.Add(5*time.Second).Format(time.RFC3339), 3},
		} {
			r := e.do("GET", "/v1/audit/events?tenant=acme"+tc.query, "auditor:acme", nil)
			var page struct {
				Events []map[string]any `json:"events"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &page) != nil || len(page.Events) != tc.want {
				t.Errorf("query %q: %d %s, want %d events", tc.query, r.status, r.body, tc.want)
			}
		}
		// Pages of 3 walk all events once, in time order.
		var seen []float64
		cursor := ""
		for range 10 {
			r := e.do("GET", "/v1/audit/events?limit=3&cursor="+cursor, "auditor:acme", nil)
			var page struct {
				Events []map[string]any `json:"events"`
				Next   string           `json:"next_cursor"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &page) != nil {
				t.Fatalf("page: %d %s", r.status, r.body)
			}
			for _, ev := range page.Events {
				seen = append(seen, ev["seq"].(float64))
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		if len(seen) != 8 || seen[0] != 1 || seen[7] != 8 {
			t.Fatalf("paged seqs %v", seen)
		}
		// JSON lines: one canonical event per line, hashing to what was stored.
		r := e.do("GET", "/v1/audit/events?format=jsonl&tenant=acme", "admin:", nil)
		lines := bytes.Split(bytes.TrimSuffix(r.body, []byte("\n")), []byte("\n"))
		if r.status != 200 || len(lines) != 8 {
			t.Fatalf("jsonl: %d, %d lines", r.status, len(lines))
		}
		var ev Event
		if err := json.Unmarshal(lines[0], &ev); err != nil || ev.Seq != 1 || ev.Tenant != "acme" {
			t.Fatalf("jsonl line: %s", lines[0])
		}
	})
}

func TestTamperingDetected(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		nodes := &nodeKeys{}
		e := newEnv(t, d, nodes, nil)
		for _, tc := range []struct {
			name   string
			batch  func(p *producer) Batch
			status int
			code   string
			expect int64 // expected_seq for 409
		}{
			{"edited event", func(p *producer) Batch {
				b := p.next(t, 3)
				b.Events[1] = bytes.Replace(b.Events[1], []byte(`"agent":"agent-1"`), []byte(`"agent":"mallory"`), 1)
				return b
			}, 401, CodeHashMismatch, 0},
			{"event deleted from the batch", func(p *producer) Batch {
				b := p.next(t, 3)
				b.Events = append(b.Events[:1], b.Events[2])
				b.SeqLast--
				return b
			}, 409, CodeGap, 1},
			{"reordered batch", func(p *producer) Batch {
				b := p.next(t, 3)
				b.Events[0], b.Events[1] = b.Events[1], b.Events[0]
				return b
			}, 409, CodeReorder, 1},
			{"batches out of order", func(p *producer) Batch {
				p.next(t, 2) // never sent
				return p.next(t, 2)
			}, 409, CodeGap, 1},
			{"signed by another key", func(p *producer) Batch {
				b := p.next(t, 2)
				other := newProducer(t, "intruder", "acme", "x")
				h, _ := hex.DecodeString(b.BatchHash)
				b.Signature = hex.EncodeToString(signWith(other, h))
				return b
			}, 401, CodeBadSignature, 0},
			{"unknown node", func(p *producer) Batch {
				delete(nodes.keys, p.node)
				return p.next(t, 2)
			}, 401, CodeUnknownNode, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := newProducer(t, "node-"+strings.ReplaceAll(tc.name, " ", "-"), "acme", "c1")
				nodes.enroll(p)
				before := e.incidents(tc.code)
				r := e.send(p, tc.batch(p))
				m := r.json(t)
				if r.status != tc.status || m["error"] != tc.code {
					t.Fatalf("%d %s; want %d %s", r.status, r.body, tc.status, tc.code)
				}
				if tc.status == 409 && m["expected_seq"] != float64(tc.expect) {
					t.Fatalf("expected_seq %v, want %d", m["expected_seq"], tc.expect)
				}
				if e.incidents(tc.code) != before+1 {
					t.Fatalf("no %s incident recorded", tc.code)
				}
				if n := e.count(`SELECT count(*) FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = $1)`, p.node); n != 0 {
					t.Fatalf("%d events stored from a refused batch", n)
				}
			})
		}

		t.Run("forked chain", func(t *testing.T) {
			p := newProducer(t, "node-fork", "acme", "c1")
			nodes.enroll(p)
			if r := e.send(p, p.next(t, 3)); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			// A second history from the same chain: seqs 2-4 differ.
			q := newProducer(t, "node-fork", "acme", "c1")
			q.next(t, 1)
			fork := q.next(t, 3, func(m map[string]any) { m["tool"] = "other" })
			r := e.send(p, fork)
			if m := r.json(t); r.status != 409 || m["error"] != CodeFork || m["expected_seq"] != float64(4) {
				t.Fatalf("fork: %d %s", r.status, r.body)
			}
			// A batch that claims to continue from seq 3 with another prev hash.
			q.seq, q.hashes, q.head = 3, q.hashes[:3], q.hashes[2]
			r = e.send(p, q.next(t, 1))
			if m := r.json(t); r.status != 409 || m["error"] != CodeFork {
				t.Fatalf("fork at the head: %d %s", r.status, r.body)
			}
			if e.incidents(CodeFork) != 2 {
				t.Fatal("fork incidents not recorded")
			}
			if n := e.count(`SELECT count(*) FROM audit_events WHERE chain_key IN (SELECT chain_key FROM audit_chains WHERE node_id = 'node-fork')`); n != 3 {
				t.Fatalf("%d events after the forks, want the original 3", n)
			}
		})

		t.Run("event id reused at a new position", func(t *testing.T) {
			p := newProducer(t, "node-dup", "acme", "c1")
			nodes.enroll(p)
			if r := e.send(p, p.next(t, 2)); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			r := e.send(p, p.next(t, 1, func(m map[string]any) { m["id"] = "node-dup-c1-1" }))
			if m := r.json(t); r.status != 409 || m["error"] != CodeDuplicateID || m["expected_seq"] != float64(3) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})

		t.Run("incidents are listed", func(t *testing.T) {
			r := e.do("GET", "/v1/audit/incidents?tenant=acme", "auditor:acme", nil)
			var out struct {
				Incidents []Incident `json:"incidents"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &out) != nil || len(out.Incidents) < 9 {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	})
}

// spanRecorder keeps what the service hands to its span sink.
type spanRecorder struct {
	mu   sync.Mutex
	recs []Record
}

func (s *spanRecorder) RecordEvents(_ context.Context, recs []Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
}

// TestSpansForNewEventsOnly: every stored event reaches the span sink once;
// resent duplicates and refused batches do not.
func TestSpansForNewEventsOnly(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	nodes := &nodeKeys{}
	spans := &spanRecorder{}
	e := newEnv(t, d, nodes, spans)
	p := newProducer(t, "node-1", "acme", "c1")
	nodes.enroll(p)
	b1 := p.next(t, 4, func(m map[string]any) {
		m["trace_id"] = "4bf92f3577b34da6a3ce929d0e0e4736"
		m["span_id"] = "00f067aa0ba902b7"
	})
	for _, b := range []Batch{b1, b1, p.next(t, 2)} {
		if r := e.send(p, b); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	bad := p.next(t, 1)
	bad.Signature = strings.Repeat("0", 128)
	if r := e.send(p, bad); r.status != 401 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	spans.mu.Lock()
	defer spans.mu.Unlock()
	if len(spans.recs) != 6 {
		t.Fatalf("%d events reached the span sink, want 6", len(spans.recs))
	}
	for i, r := range spans.recs {
		if r.Seq != int64(i+1) || r.ChainID != "c1" || (i < 4 && r.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736") {
			t.Fatalf("span record %d: %+v", i, r.Event)
		}
	}
}

func TestAuthorization(t *testing.T) {
	d := dbtest.New(t, db.SQLite)
	nodes := &nodeKeys{}
	e := newEnv(t, d, nodes, nil)
	p := newProducer(t, "node-1", "acme", "c1")
	nodes.enroll(p)
	body, _ := json.Marshal(p.next(t, 1))
	for _, tc := range []struct {
		name, method, path, token string
		body                      []byte
		status                    int
	}{
		{"batch without credentials", "POST", "/v1/audit/batches", "", body, 401},
		{"batch from an auditor", "POST", "/v1/audit/batches", "auditor:acme", body, 403},
		{"batch naming another node", "POST", "/v1/audit/batches", "node:node-2:acme", body, 403},
		{"batch for another tenant", "POST", "/v1/audit/batches", "node:node-1:other", body, 403},
		{"batch not JSON", "POST", "/v1/audit/batches", "node:node-1:acme", []byte("{"), 400},
		{"batch with an unknown field", "POST", "/v1/audit/batches", "node:node-1:acme", []byte(`{"x":1}`), 400},
		{"events without credentials", "GET", "/v1/audit/events?tenant=acme", "", nil, 401},
		{"events by a node", "GET", "/v1/audit/events?tenant=acme", "node:node-1:acme", nil, 403},
		{"events of another tenant", "GET", "/v1/audit/events?tenant=other", "auditor:acme", nil, 403},
		{"events with a bad cursor", "GET", "/v1/audit/events?cursor=zz", "auditor:acme", nil, 400},
		{"events with a bad time", "GET", "/v1/audit/events?from=yesterday", "auditor:acme", nil, 400},
		{"export of another tenant", "GET", "/v1/audit/export?tenant=other&from=2026-01-01T00:00:00Z&to=2026-12-31T00:00:00Z", "auditor:acme", nil, 403},
		{"export without a window", "GET", "/v1/audit/export?tenant=acme", "auditor:acme", nil, 400},
		{"incidents by an agent", "GET", "/v1/audit/incidents", "agent:acme", nil, 403},
		{"global auditor without a tenant", "GET", "/v1/audit/checkpoints", "auditor:", nil, 400},
		{"evidence key for a global auditor", "GET", "/v1/audit/evidence-key", "auditor:", nil, 200},
		{"evidence key for a node", "GET", "/v1/audit/evidence-key", "node:node-1:acme", nil, 403},
		{"evidence key without credentials", "GET", "/v1/audit/evidence-key", "", nil, 401},
	} {
		if r := e.do(tc.method, tc.path, tc.token, tc.body); r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
	}
	if n := e.count(`SELECT count(*) FROM audit_events`); n != 0 {
		t.Fatalf("%d events stored by refused calls", n)
	}
}

// TestRestartDuringIngest: a batch stored by one instance whose reply was
// lost is resent to a fresh instance on the same database; it is counted
// as duplicates, and the chain continues with nothing lost or doubled.
func TestRestartDuringIngest(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, d *db.DB) {
		nodes := &nodeKeys{}
		p := newProducer(t, "node-1", "acme", "c1")
		nodes.enroll(p)
		first := newEnv(t, d, nodes, nil)
		b1, b2 := p.next(t, 50), p.next(t, 50)
		if r := first.send(p, b1); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		// The instance stores b2 and dies before replying: the producer
		// sees a failed call and must resend.
		first.dropReplies.Store(true)
		body, _ := json.Marshal(b2)
		req, _ := http.NewRequest("POST", first.srv.URL+"/v1/audit/batches", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer node:node-1:acme")
		req.Header.Set("Content-Type", "application/json")
		if resp, err := first.srv.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("the call whose reply was dropped answered %s", resp.Status)
		}
		first.srv.Close()

		second := newEnv(t, d, nodes, nil)
		if r := second.send(p, b2); r.status != 200 || r.json(t)["duplicates"] != float64(50) {
			t.Fatalf("resend after restart: %d %s", r.status, r.body)
		}
		b3 := p.next(t, 50)
		// Concurrent resends of the same new batch: exactly one stores it.
		results := make(chan reply, 4)
		for range 4 {
			go func() { results <- second.send(p, b3) }()
		}
		accepted, dups := 0.0, 0.0
		for range 4 {
			r := <-results
			if r.status != 200 {
				t.Fatalf("concurrent resend: %d %s", r.status, r.body)
			}
			accepted += r.json(t)["accepted"].(float64)
			dups += r.json(t)["duplicates"].(float64)
		}
		if accepted != 50 || dups != 150 {
			t.Fatalf("accepted %v duplicates %v, want 50 and 150", accepted, dups)
		}
		if n := second.incidents(CodeReplay); n != 4 {
			t.Fatalf("%d replay incidents, want 4 (one resend after restart, three concurrent)", n)
		}
		if n := second.count(`SELECT count(*) FROM audit_events`); n != 150 {
			t.Fatalf("%d events, want 150", n)
		}
		if n := second.count(`SELECT count(DISTINCT id) FROM audit_events`); n != 150 {
			t.Fatalf("%d distinct ids, want 150", n)
		}
	})
}

func signWith(p *producer, msg []byte) []byte { return ed25519Sign(p, msg) }
