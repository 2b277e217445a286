package config

import (
	"encoding/base64"
	"strings"
	"testing"
)

const jwks = `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`

var bundleB64 = base64.StdEncoding.EncodeToString([]byte("bundle bytes"))

func minimal(extra string) string {
	s := `{"jwks":` + jwks + `,"node":{"id":"node-1"}`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal("")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Token.Header != "authorization" || c.Token.SkewSeconds != 60 || c.Token.CacheEntries != DefaultTokenCacheEntries {
		t.Errorf("token defaults: %+v", c.Token)
	}
	if c.Limits.MaxBodyBytes != DefaultMaxBodyBytes || c.Limits.ApprovalHoldMs != 0 {
		t.Errorf("limits defaults: %+v", c.Limits)
	}
	if c.NoBundle != (NoBundle{Read: Closed, Write: Closed}) {
		t.Errorf("no_bundle defaults: %+v", c.NoBundle)
	}
	if c.OnAuditOverflow != OverflowDenyWrites {
		t.Errorf("on_audit_overflow default %q", c.OnAuditOverflow)
	}
	if c.Audit != (Audit{MaxQueue: DefaultAuditMaxQueue, BatchSize: DefaultAuditBatchSize, FlushIntervalMs: DefaultAuditFlushMillis}) {
		t.Errorf("audit defaults: %+v", c.Audit)
	}
	if string(c.JWKS) != jwks || len(c.Bundles) != 0 || c.Node.ID != "node-1" {
		t.Errorf("config %+v", c)
	}
}

func TestParseFull(t *testing.T) {
	doc := `{
	  "bundles": {"acme": "` + bundleB64 + `", "platform": "` + bundleB64 + `"},
	  "jwks": ` + jwks + `,
	  "token": {"header": "x-aegis-token", "issuer": "https://cp", "audience": "aegis", "skew_seconds": 30, "cache_entries": 10},
	  "node": {"id": "gw-1", "region": "eu-west-1"},
	  "limits": {"max_body_bytes": 65536, "approval_hold_ms": 5000},
	  "control_plane": {"cluster": "aegis-cp", "timeout_ms": 500},
	  "audit": {"max_queue": 10, "batch_size": 5, "flush_interval_ms": 200},
	  "no_bundle": {"read": "open", "write": "closed"},
	  "on_audit_overflow": "drop"
	}`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Bundles["acme"]) != "bundle bytes" || len(c.Bundles) != 2 {
		t.Errorf("bundles %q", c.Bundles)
	}
	want := Token{Header: "x-aegis-token", Issuer: "https://cp", Audience: "aegis", SkewSeconds: 30, CacheEntries: 10}
	if c.Token != want {
		t.Errorf("token %+v", c.Token)
	}
	if c.Node != (Node{ID: "gw-1", Region: "eu-west-1"}) {
		t.Errorf("node %+v", c.Node)
	}
	if c.Limits != (Limits{MaxBodyBytes: 65536, ApprovalHoldMs: 5000}) {
		t.Errorf("limits %+v", c.Limits)
	}
	if c.ControlPlane != (ControlPlane{Cluster: "aegis-cp", Authority: "aegis-cp", TimeoutMs: 500}) {
		t.Errorf("control plane %+v", c.ControlPlane)
	}
	if c.Audit != (Audit{MaxQueue: 10, BatchSize: 5, FlushIntervalMs: 200}) {
		t.Errorf("audit %+v", c.Audit)
	}
	if c.NoBundle.Read != Open || c.OnAuditOverflow != OverflowDrop {
		t.Errorf("no_bundle %+v overflow %q", c.NoBundle, c.OnAuditOverflow)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error, each naming the field
	}{
		{"empty", ``, []string{"empty"}},
		{"not an object", `[]`, []string{"configuration"}},
		{"trailing data", minimal("") + `{}`, []string{"after the JSON object"}},
		{"syntax", `{"jwks":`, []string{"configuration"}},
		{"unknown field", minimal(`"mode":"observe"`), []string{`unknown field "mode"`}},
		{"unknown nested field", minimal(`"limits":{"max_body":1}`), []string{`unknown field "max_body"`}},
		{"duplicate key", minimal(`"on_audit_overflow":"drop","on_audit_overflow":"deny_writes"`), []string{"on_audit_overflow: duplicate key"}},
		{"duplicate key by case folding", minimal(`"NODE":{"id":"x"}`), []string{"NODE: duplicate key"}},
		{"duplicate nested", minimal(`"limits":{"max_body_bytes":1,"max_body_bytes":2}`), []string{"limits.max_body_bytes: duplicate key"}},
		{"trust root in config", minimal(`"bundle_public_key":"x"`), []string{`unknown field "bundle_public_key"`}},
		{"missing jwks", `{"node":{"id":"n"}}`, []string{"jwks: required"}},
		{"jwks not object", `{"jwks":"x","node":{"id":"n"}}`, []string{"jwks: want a JSON object"}},
		{"missing node", `{"jwks":` + jwks + `}`, []string{"node.id: required"}},
		{"bad node id", `{"jwks":` + jwks + `,"node":{"id":"a/b"}}`, []string{"node.id: must be"}},
		{"bad region", `{"jwks":` + jwks + `,"node":{"id":"n","region":"eu west"}}`, []string{"node.region: must be"}},
		{"bundle not base64", minimal(`"bundles":{"acme":"!!"}`), []string{"bundles.acme: not standard base64"}},
		{"bundle url base64", minimal(`"bundles":{"acme":"-_-_"}`), []string{"bundles.acme: not standard base64"}},
		{"bundle empty", minimal(`"bundles":{"acme":""}`), []string{"bundles.acme: empty bundle"}},
		{"bad tenant", minimal(`"bundles":{"ac me":"` + bundleB64 + `"}`), []string{"bundles.ac me: tenant name"}},
		{"upper-case header", minimal(`"token":{"header":"X-Token"}`), []string{"token.header"}},
		{"pseudo header", minimal(`"token":{"header":":path"}`), []string{"token.header"}},
		{"skew too large", minimal(`"token":{"skew_seconds":3600}`), []string{"token.skew_seconds"}},
		{"cache zero", minimal(`"token":{"cache_entries":0}`), []string{"token.cache_entries"}},
		{"body zero", minimal(`"limits":{"max_body_bytes":0}`), []string{"limits.max_body_bytes"}},
		{"body huge", minimal(`"limits":{"max_body_bytes":1073741824}`), []string{"limits.max_body_bytes"}},
		{"body not int", minimal(`"limits":{"max_body_bytes":1.5}`), []string{"max_body_bytes"}},
		{"hold negative", minimal(`"limits":{"approval_hold_ms":-1}`), []string{"limits.approval_hold_ms"}},
		{"cluster missing", minimal(`"control_plane":{"timeout_ms":5}`), []string{"control_plane.cluster: required"}},
		{"cluster bad", minimal(`"control_plane":{"cluster":"a b"}`), []string{"control_plane.cluster"}},
		{"timeout zero", minimal(`"control_plane":{"cluster":"cp","timeout_ms":0}`), []string{"control_plane.timeout_ms"}},
		{"audit queue zero", minimal(`"audit":{"max_queue":0}`), []string{"audit.max_queue"}},
		{"audit flush fast", minimal(`"audit":{"flush_interval_ms":1}`), []string{"audit.flush_interval_ms"}},
		{"no_bundle read", minimal(`"no_bundle":{"read":"maybe"}`), []string{"no_bundle.read"}},
		{"no_bundle write open", minimal(`"no_bundle":{"write":"open"}`), []string{"no_bundle.write"}},
		{"overflow", minimal(`"on_audit_overflow":"block"`), []string{"on_audit_overflow"}},
		{"several at once", `{"jwks":1,"limits":{"max_body_bytes":0},"on_audit_overflow":"x"}`,
			[]string{"jwks:", "node.id", "limits.max_body_bytes", "on_audit_overflow"}},
		{"state inline not object", minimal(`"state":{"inline":{"acme":1}}`), []string{"state.inline.acme"}},
		{"state inline bad base64", minimal(`"state":{"inline":{"acme":"!!"}}`), []string{"state.inline.acme"}},
		{"state inline bad tenant", minimal(`"state":{"inline":{"a b":{}}}`), []string{"state.inline.a b"}},
		{"state refresh without cp", minimal(`"state":{"refresh_ms":1000}`), []string{"state.refresh_ms: needs control_plane"}},
		{"state refresh too fast", minimal(`"control_plane":{"cluster":"cp"},"state":{"refresh_ms":1}`), []string{"state.refresh_ms"}},
		{"state unknown", minimal(`"state":{"url":"x"}`), []string{`unknown field "url"`}},
		{"fetch without cp", minimal(`"fetch":{"jwks":true}`), []string{"fetch: needs control_plane"}},
		{"fetch bundles without tenants", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"bundles":true}`), []string{"fetch.tenants: required"}},
		{"fetch bad tenant", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"tenants":["a/b"]}`), []string{"fetch.tenants[0]"}},
		{"fetch refresh", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"jwks":true,"refresh_ms":0}`), []string{"fetch.refresh_ms"}},
		{"too deep", minimal(`"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40)), []string{"nested too deeply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if c.JWKS != nil || c.Bundles != nil {
				t.Errorf("partial config returned with the error: %+v", c)
			}
		})
	}
}

func TestParseStateAndFetch(t *testing.T) {
	env := `{"payload":"e30=","signature":"AAAA"}`
	doc := minimal(`"control_plane":{"cluster":"cp"},` +
		`"state":{"inline":{"acme":` + env + `,"globex":"` + base64.StdEncoding.EncodeToString([]byte(env)) + `"},"refresh_ms":5000},` +
		`"fetch":{"tenants":["zeta","acme","zeta"],"bundles":true,"jwks":true}`)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.State.Inline["acme"]) != env || string(c.State.Inline["globex"]) != env || c.State.RefreshMs != 5000 {
		t.Errorf("state %+v", c.State)
	}
	if strings.Join(c.Fetch.Tenants, ",") != "acme,zeta" || !c.Fetch.Bundles || !c.Fetch.JWKS || c.Fetch.RefreshMs != DefaultFetchRefreshMs {
		t.Errorf("fetch %+v", c.Fetch)
	}
	if got := strings.Join(c.Tenants(), ","); got != "acme,globex,zeta" {
		t.Errorf("tenants %s", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal("")))
	f.Add([]byte(minimal(`"bundles":{"a":"` + bundleB64 + `"},"limits":{"max_body_bytes":10}`)))
	f.Add([]byte(minimal(`"no_bundle":{"read":"open"},"audit":{"max_queue":3}`)))
	f.Add([]byte(`{"a":{"A":1,"a":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever was accepted must satisfy the invariants the plugin
		// relies on without re-checking.
		if c.Node.ID == "" || len(c.JWKS) == 0 || c.Token.Header == "" {
			t.Fatalf("accepted config without required fields: %+v", c)
		}
		if c.Limits.MaxBodyBytes < 1 || c.Limits.MaxBodyBytes > MaxMaxBodyBytes {
			t.Fatalf("max_body_bytes %d", c.Limits.MaxBodyBytes)
		}
		if c.NoBundle.Write != Closed || (c.NoBundle.Read != Open && c.NoBundle.Read != Closed) {
			t.Fatalf("no_bundle %+v", c.NoBundle)
		}
		if c.OnAuditOverflow != OverflowDrop && c.OnAuditOverflow != OverflowDenyWrites {
			t.Fatalf("overflow %q", c.OnAuditOverflow)
		}
		for tenant, b := range c.Bundles {
			if !validName(tenant) || len(b) == 0 {
				t.Fatalf("bundle %q (%d bytes)", tenant, len(b))
			}
		}
	})
}
