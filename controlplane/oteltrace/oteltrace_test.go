package oteltrace

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aegis-mesh/aegis/controlplane/audit"
	"github.com/aegis-mesh/aegis/controlplane/oteltrace/otlptest"
	"github.com/aegis-mesh/aegis/jcs"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// records makes a signed batch of three decisions and prepares it exactly
// as ingest does; the first two carry the agent's trace context.
func records(t *testing.T) []audit.Record {
	t.Helper()
	seed := sha256.Sum256([]byte("otel node"))
	key := ed25519.NewKeyFromSeed(seed[:])
	var head [32]byte
	var evs []json.RawMessage
	for i := 1; i <= 3; i++ {
		trace, span := "4bf92f3577b34da6a3ce929d0e0e4736", fmt.Sprintf("00f067aa0ba902b%d", i)
		if i == 3 {
			trace, span = "", ""
		}
		raw := fmt.Sprintf(`{"id":"dec-%d","seq":%d,"node_id":"n1","tenant":"acme","time":"2026-11-20T12:00:0%dZ","agent":"agent-7","chain":["agent-7","alice"],
			"tool":"payments","action":"allow","shadow_action":"","reasons":[],"rule_ids":["r-9"],"policy_revision":12,"input_digest":"ab",
			"redactions":[],"decision_ns":%d,"trace_id":%q,"span_id":%q,"status":200,"approval_id":"","override_jti":"","cost_micro_usd":1500000}`,
			i, i, i, 1000*i, trace, span)
		canon, err := jcs.Canonicalize([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		head = sha256.Sum256(append(head[:], canon...))
		evs = append(evs, json.RawMessage(raw))
	}
	b := audit.Batch{NodeID: "n1", Tenant: "acme", ChainID: "n1/vm", SeqFirst: 1, SeqLast: 3, PrevHash: strings.Repeat("0", 64),
		Events: evs, BatchHash: hex.EncodeToString(head[:]), Signature: hex.EncodeToString(ed25519.Sign(key, head[:]))}
	p, err := audit.Prepare(b, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return p.Records
}

func attrs(s *tracepb.Span) map[string]*commonpb.AnyValue {
	m := map[string]*commonpb.AnyValue{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestSpansReachCollector(t *testing.T) {
	for _, protocol := range []string{GRPC, HTTP} {
		t.Run(protocol, func(t *testing.T) {
			var rcv *otlptest.Receiver
			var endpoint string
			switch protocol {
			case GRPC:
				rcv, endpoint = otlptest.StartGRPC(t)
			case HTTP:
				rcv = &otlptest.Receiver{}
				srv := httptest.NewServer(rcv.HTTPHandler("/v1/traces"))
				t.Cleanup(srv.Close)
				endpoint = strings.TrimPrefix(srv.URL, "http://")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			exp, err := New(ctx, Config{Protocol: protocol, Endpoint: endpoint, Insecure: true})
			if err != nil {
				t.Fatal(err)
			}
			exp.RecordEvents(ctx, records(t))
			if err := exp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			spans := rcv.Spans()
			if len(spans) != 3 {
				t.Fatalf("%d spans, want 3", len(spans))
			}
			byID := map[string]*tracepb.Span{}
			for _, s := range spans {
				byID[attrs(s)["aegis.decision_id"].GetStringValue()] = s
			}
			for i := 1; i <= 3; i++ {
				s := byID[fmt.Sprintf("dec-%d", i)]
				if s == nil {
					t.Fatalf("no span for dec-%d", i)
				}
				a := attrs(s)
				if s.Name != "aegis.decision" || a["aegis.agent_id"].GetStringValue() != "agent-7" || a["aegis.tool"].GetStringValue() != "payments" ||
					a["aegis.action"].GetStringValue() != "allow" || a["aegis.policy_version"].GetIntValue() != 12 || a["aegis.tenant"].GetStringValue() != "acme" ||
					a["aegis.cost_usd"].GetDoubleValue() != 1.5 || len(a["aegis.agent_chain"].GetArrayValue().GetValues()) != 2 {
					t.Errorf("span %d: name %q attributes %v", i, s.Name, s.Attributes)
				}
				start := time.Date(2026, 11, 20, 12, 0, i, 0, time.UTC)
				if s.StartTimeUnixNano != uint64(start.UnixNano()) || s.EndTimeUnixNano-s.StartTimeUnixNano != uint64(1000*i) {
					t.Errorf("span %d: start %d end %d", i, s.StartTimeUnixNano, s.EndTimeUnixNano)
				}
				tid, pid := hex.EncodeToString(s.TraceId), hex.EncodeToString(s.ParentSpanId)
				if i < 3 && (tid != "4bf92f3577b34da6a3ce929d0e0e4736" || pid != fmt.Sprintf("00f067aa0ba902b%d", i)) {
					t.Errorf("span %d: trace %s parent %s, want the agent's", i, tid, pid)
				}
				if i == 3 && (len(s.ParentSpanId) != 0 || tid == "4bf92f3577b34da6a3ce929d0e0e4736") {
					t.Errorf("span without trace context: trace %s parent %s", tid, pid)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Protocol: GRPC, Endpoint: "127.0.0.1:4317"}, true},
		{Config{Protocol: HTTP, Endpoint: "127.0.0.1:4318", URLPath: "/otlp/v1/traces"}, true},
		{Config{Protocol: "udp", Endpoint: "x"}, false},
		{Config{Protocol: GRPC}, false},
		{Config{Protocol: GRPC, Endpoint: "x", URLPath: "/v1/traces"}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
}

// TestLargeBatchKeepsEverySpan: one audit batch at the size limit reaches
// the collector whole.
func TestLargeBatchKeepsEverySpan(t *testing.T) {
	rcv, endpoint := otlptest.StartGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exp, err := New(ctx, Config{Protocol: GRPC, Endpoint: endpoint, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]audit.Record, audit.MaxBatchEvents)
	for i := range recs {
		recs[i] = audit.Record{Event: audit.Event{ID: fmt.Sprintf("d-%d", i), Seq: int64(i + 1), Time: "2026-11-20T12:00:00Z", Action: "allow"}}
	}
	exp.RecordEvents(ctx, recs)
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.Spans()); n != len(recs) {
		t.Fatalf("%d spans reached the collector, want %d", n, len(recs))
	}
}
