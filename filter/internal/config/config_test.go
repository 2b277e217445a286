package config

import (
	"encoding/base64"
	"reflect"
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

var errorCases = []struct {
	name string
	doc  string
	want []string // substrings of the error, each naming the field
}{
	{"empty", ``, []string{"empty"}},
	{"not an object", `[]`, []string{`line 1, column 1: want a JSON object, got array`}},
	{"trailing data", minimal("") + `{}`, []string{`line 1, column 123: unexpected data after the JSON value`}},
	{"syntax", `{"jwks":`, []string{`line 1, column 9 (at .jwks): unexpected end of input`}},
	{"unknown field", minimal(`"mode":"observe"`), []string{`mode (line 1, column 130): unknown member`}},
	{"unknown nested field", minimal(`"limits":{"max_body":1}`), []string{`limits.max_body (line 1, column 144): unknown member`}},
	{"duplicate key", minimal(`"on_audit_overflow":"drop","on_audit_overflow":"deny_writes"`), []string{`line 1, column 150 (at .on_audit_overflow): duplicate key "on_audit_overflow"`}},
	{"duplicate key by case folding", minimal(`"NODE":{"id":"x"}`), []string{`NODE (line 1, column 130): duplicate key: the same as "node" to a reader that ignores letter case`}},
	{"duplicate nested", minimal(`"limits":{"max_body_bytes":1,"max_body_bytes":2}`), []string{`line 1, column 152 (at .limits.max_body_bytes): duplicate key "max_body_bytes"`}},
	{"trust root in config", minimal(`"bundle_public_key":"x"`), []string{`bundle_public_key (line 1, column 143): unknown member`}},
	{"missing jwks", `{"node":{"id":"n"}}`, []string{`jwks: required: the JWKS (JSON object) agent tokens are verified with`}},
	{"jwks not object", `{"jwks":"x","node":{"id":"n"}}`, []string{`jwks (line 1, column 9): want a JSON object {"keys": [...]}, got string`}},
	{"missing node", `{"jwks":` + jwks + `}`, []string{`node.id: required: names the node in audit chains`}},
	{"bad node id", `{"jwks":` + jwks + `,"node":{"id":"a/b"}}`, []string{`node.id (line 1, column 113): must be 1-128 characters of [A-Za-z0-9._-]`}},
	{"bad region", `{"jwks":` + jwks + `,"node":{"id":"n","region":"eu west"}}`, []string{`node.region (line 1, column 126): must be 1-128 characters of [A-Za-z0-9._-]`}},
	{"bundle not base64", minimal(`"bundles":{"acme":"!!"}`), []string{`bundles.acme (line 1, column 141): not standard base64: illegal base64 data at input byte 0`}},
	{"bundle url base64", minimal(`"bundles":{"acme":"-_-_"}`), []string{`bundles.acme (line 1, column 141): not standard base64: illegal base64 data at input byte 0`}},
	{"bundle empty", minimal(`"bundles":{"acme":""}`), []string{`bundles.acme (line 1, column 141): empty bundle`}},
	{"bad tenant", minimal(`"bundles":{"ac me":"` + bundleB64 + `"}`), []string{`bundles["ac me"] (line 1, column 142): tenant name must be 1-128 characters of [A-Za-z0-9._-]`}},
	{"upper-case header", minimal(`"token":{"header":"X-Token"}`), []string{`token.header (line 1, column 141): "X-Token" is not a lower-case HTTP header name`}},
	{"pseudo header", minimal(`"token":{"header":":path"}`), []string{`token.header (line 1, column 141): ":path" is not a lower-case HTTP header name`}},
	{"skew too large", minimal(`"token":{"skew_seconds":3600}`), []string{`token.skew_seconds (line 1, column 147): 3600 outside [0, 600]`}},
	{"cache zero", minimal(`"token":{"cache_entries":0}`), []string{`token.cache_entries (line 1, column 148): 0 outside [1, 65536]`}},
	{"body zero", minimal(`"limits":{"max_body_bytes":0}`), []string{`limits.max_body_bytes (line 1, column 150): 0 outside [1, 16777216]`}},
	{"body huge", minimal(`"limits":{"max_body_bytes":1073741824}`), []string{`limits.max_body_bytes (line 1, column 150): 1073741824 outside [1, 16777216]`}},
	{"body not int", minimal(`"limits":{"max_body_bytes":1.5}`), []string{`limits.max_body_bytes (line 1, column 150): want an integer, got 1.5`}},
	{"hold negative", minimal(`"limits":{"approval_hold_ms":-1}`), []string{`limits.approval_hold_ms (line 1, column 152): -1 outside [0, 300000]`}},
	{"cluster missing", minimal(`"control_plane":{"timeout_ms":5}`), []string{`control_plane.cluster: required when control_plane is given`}},
	{"cluster bad", minimal(`"control_plane":{"cluster":"a b"}`), []string{`control_plane.cluster (line 1, column 150): must be 1-128 characters of [A-Za-z0-9._-]`}},
	{"timeout zero", minimal(`"control_plane":{"cluster":"cp","timeout_ms":0}`), []string{`control_plane.timeout_ms (line 1, column 168): 0 outside [1, 60000]`}},
	{"audit queue zero", minimal(`"audit":{"max_queue":0}`), []string{`audit.max_queue (line 1, column 144): 0 outside [1, 1048576]`}},
	{"audit flush fast", minimal(`"audit":{"flush_interval_ms":1}`), []string{`audit.flush_interval_ms (line 1, column 152): 1 outside [10, 600000]`}},
	{"no_bundle read", minimal(`"no_bundle":{"read":"maybe"}`), []string{`no_bundle.read (line 1, column 143): "maybe": want "open" or "closed"`}},
	{"no_bundle write open", minimal(`"no_bundle":{"write":"open"}`), []string{`no_bundle.write (line 1, column 144): "open": only "closed" is accepted`}},
	{"overflow", minimal(`"on_audit_overflow":"block"`), []string{`on_audit_overflow (line 1, column 143): "block": want "deny_writes" or "drop"`}},
	{"several at once", `{"jwks":1,"limits":{"max_body_bytes":0},"on_audit_overflow":"x"}`,
		[]string{
			"jwks (line 1, column 9): want a JSON object {\"keys\": [...]}, got number\n",
			"\nnode.id: required: names the node in audit chains\n",
			"\nlimits.max_body_bytes (line 1, column 38): 0 outside [1, 16777216]\n",
			"\non_audit_overflow (line 1, column 61): \"x\": want \"deny_writes\" or \"drop\"",
		}},
	{"state inline not object", minimal(`"state":{"inline":{"acme":1}}`), []string{`state.inline.acme (line 1, column 149): want a signed state object or its standard base64, got number`}},
	{"state inline bad base64", minimal(`"state":{"inline":{"acme":"!!"}}`), []string{`state.inline.acme (line 1, column 149): not a signed state object or its standard base64`}},
	{"state inline bad tenant", minimal(`"state":{"inline":{"a b":{}}}`), []string{`state.inline["a b"] (line 1, column 148): tenant name must be 1-128 characters of [A-Za-z0-9._-]`}},
	{"state refresh without cp", minimal(`"state":{"refresh_ms":1000}`), []string{`state.refresh_ms (line 1, column 145): needs control_plane to fetch from`}},
	{"state refresh too fast", minimal(`"control_plane":{"cluster":"cp"},"state":{"refresh_ms":1}`), []string{`state.refresh_ms (line 1, column 178): 1 outside [100, 3600000]`}},
	{"state unknown", minimal(`"state":{"url":"x"}`), []string{`state.url (line 1, column 138): unknown member`}},
	{"fetch without cp", minimal(`"fetch":{"jwks":true}`), []string{`fetch (line 1, column 131): needs control_plane to fetch from`}},
	{"fetch bundles without tenants", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"bundles":true}`), []string{`fetch.tenants: required when fetch.bundles is true`}},
	{"fetch bad tenant", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"tenants":["a/b"]}`), []string{`fetch.tenants[0] (line 1, column 176): tenant name must be 1-128 characters of [A-Za-z0-9._-]`}},
	{"fetch refresh", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"jwks":true,"refresh_ms":0}`), []string{`fetch.refresh_ms (line 1, column 190): 0 outside [100, 3600000]`}},
	{"null for an object", minimal(`"limits":null`), []string{`limits (line 1, column 132): want an object, got null`}},
	{"null for a string", minimal(`"on_audit_overflow":null`), []string{`on_audit_overflow (line 1, column 143): want a string, got null`}},
	{"null jwks", `{"jwks":null,"node":{"id":"n"}}`, []string{`jwks (line 1, column 9): required`}},
	{"wrong case", minimal(`"Limits":{}`), []string{`Limits (line 1, column 132): unknown member (names are case-sensitive: "limits")`}},
	{"wrong case nested", minimal(`"token":{"Header":"x"}`), []string{`token.Header (line 1, column 141): unknown member (names are case-sensitive: "header")`}},
	{"every unknown member", minimal(`"a":1,"limits":{"b":2},"c":3`), []string{`a (line 1, column 127)`, `limits.b (line 1, column 143)`, `c (line 1, column 150)`}},
	{"case duplicate in jwks", `{"jwks":{"keys":[],"KEYS":[]},"node":{"id":"n"}}`, []string{`jwks.KEYS (line 1, column 27): duplicate key: the same as "keys"`}},
	{"case duplicate by Unicode folding", minimal(`"state":{"inline":{"acme":{"k":1,"\u212a":2}}}`), []string{`duplicate key: the same as "k"`}},
	{"exact duplicate in state", minimal(`"state":{"inline":{"acme":{"k":1,"k":2}}}`), []string{`duplicate key "k"`}},
	{"duplicate tenant", minimal(`"bundles":{"acme":"` + bundleB64 + `","acme":"` + bundleB64 + `"}`), []string{`(at .bundles.acme): duplicate key "acme"`}},
	{"integer out of 64 bits", minimal(`"audit":{"max_queue":99999999999999999999}`), []string{`audit.max_queue (line 1, column 144): want an integer within 64 bits`}},
	{"exponent integer", minimal(`"audit":{"max_queue":1e3}`), []string{`audit.max_queue (line 1, column 144): want an integer, got 1e3`}},
	{"fetch tenants not strings", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"tenants":["a",1]}`), []string{`fetch.tenants[1] (line 1, column 180): want a string, got number`}},
	{"fetch bundles not bool", minimal(`"control_plane":{"cluster":"cp"},"fetch":{"bundles":"yes"}`), []string{`fetch.bundles (line 1, column 175): want true or false, got string`}},
	{"cluster not string", minimal(`"control_plane":{"cluster":7}`), []string{`control_plane.cluster (line 1, column 150): want a string, got number`}},
	{"invalid UTF-8", minimal(`"token":{"issuer":"` + "\xff" + `"}`), []string{`invalid UTF-8`}},
	{"lone surrogate", minimal(`"token":{"issuer":"\ud800"}`), []string{`line 1, column 142 (at .token.issuer)`}},
	{"multi-line position", "{\n  \"jwks\": " + jwks + ",\n  \"node\": {\"id\": \"n\"},\n  \"limits\": {\"max_body_bytes\": 0}\n}", []string{`limits.max_body_bytes (line 4, column 32): 0 outside`}},
	{"too deep", minimal(`"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40)), []string{`line 1, column 158 (at .x[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]): nesting deeper than 32`}},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range errorCases {
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

// TestParseAsBefore holds Parse to the encoding/json reader it replaced:
// the same configuration from every document both accept, and no document
// accepted that it refused.
func TestParseAsBefore(t *testing.T) {
	env := `{"payload":"e30=","signature":"AAAA"}`
	docs := []string{
		minimal(""),
		minimal(`"bundles":{"acme":"` + bundleB64 + `"},"limits":{"max_body_bytes":10,"approval_hold_ms":0}`),
		minimal(`"control_plane":{"cluster":"cp","authority":"cp.example","timeout_ms":5},` +
			`"state":{"inline":{"acme":` + env + `,"globex":"` + base64.StdEncoding.EncodeToString([]byte(env)) + `"},"refresh_ms":500},` +
			`"fetch":{"tenants":["b","a","b"],"bundles":true,"jwks":false,"refresh_ms":100}`),
		minimal(`"token":{"header":"x-t","issuer":"i","audience":"a","skew_seconds":0,"cache_entries":1},"audit":{"max_queue":1,"batch_size":2,"flush_interval_ms":10}`),
		minimal(`"no_bundle":{"read":"open","write":"closed"},"on_audit_overflow":"drop","fetch":{}`),
		"\n\t{ \"jwks\" : " + jwks + " , \"node\" : { \"id\" : \"n\" , \"region\" : \"r\" } }\n ",
	}
	for _, doc := range docs {
		c, err := Parse([]byte(doc))
		old, oldErr := legacyParse([]byte(doc))
		if err != nil || oldErr != nil {
			t.Fatalf("%s: %v / before: %v", doc, err, oldErr)
		}
		if !reflect.DeepEqual(c, old) {
			t.Errorf("%s:\n%+v\nbefore:\n%+v", doc, c, old)
		}
	}
	for _, tt := range errorCases {
		if _, err := legacyParse([]byte(tt.doc)); err == nil {
			// Refused only now; each such case is a deliberate tightening.
			switch tt.name {
			case "null for an object", "null for a string", "wrong case", "wrong case nested", "invalid UTF-8", "lone surrogate":
			default:
				t.Errorf("%s: the encoding/json reader accepted it", tt.name)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal("")))
	f.Add([]byte(minimal(`"bundles":{"a":"` + bundleB64 + `"},"limits":{"max_body_bytes":10}`)))
	f.Add([]byte(minimal(`"no_bundle":{"read":"open"},"audit":{"max_queue":3}`)))
	f.Add([]byte(`{"a":{"A":1,"a":2}}`))
	f.Add([]byte(minimal(`"control_plane":{"cluster":"cp","timeout_ms":5},"state":{"inline":{"a":{"p":"x"},"b":"e30="},"refresh_ms":500},"fetch":{"tenants":["b","a"],"bundles":true,"jwks":true}`)))
	f.Add([]byte(minimal(`"token":{"header":"x-t","issuer":"i","audience":"a","skew_seconds":0,"cache_entries":1}`)))
	for _, tt := range errorCases {
		f.Add([]byte(tt.doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		old, oldErr := legacyParse(data)
		if err != nil {
			return
		}
		// Strictness never drops: what the encoding/json reader refused
		// is refused, and what both accept reads the same.
		if oldErr != nil {
			t.Fatalf("accepted what the encoding/json reader refused (%v): %q", oldErr, data)
		}
		if !reflect.DeepEqual(c, old) {
			t.Fatalf("reads differently:\n%+v\n%+v", c, old)
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
