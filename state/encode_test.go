package state

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestAppendJSONLikeJSON: the bytes handed to JCS are what encoding/json
// wrote for the tagged Document, so Encode's output is unchanged.
func TestAppendJSONLikeJSON(t *testing.T) {
	odd := "<&>\u2028\"\\\x01\xffé"
	docs := []Document{doc(), {}, {Tenant: odd, Seq: -1, IssuedAt: t0.Add(time.Nanosecond), ExpiresAt: t0.In(time.FixedZone("x", 3600)),
		KillSwitch: true, RevokedAgents: []string{}, Budgets: map[string]float64{odd: 1e21, "b": 1e-7, "a": math.Copysign(0, -1), "c": math.MaxFloat64}}}
	for _, d := range docs {
		same(t, d)
	}
}

func same(t *testing.T, d Document) {
	t.Helper()
	want, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.appendJSON(nil)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("appendJSON = %s, %v\nencoding/json %s", got, err, want)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("acme", int64(7), int64(0), true, "eve", "j1", "agent", 12.5)
	f.Add("\xff<", int64(-1), int64(1e12), false, "", "\u2028", "", -1e-300)
	f.Fuzz(func(t *testing.T, tenant string, seq, unix int64, kill bool, agent, jti, budget string, usd float64) {
		if math.IsNaN(usd) || math.IsInf(usd, 0) || unix < -1e10 || unix > 1e10 {
			t.Skip() // encoding/json refuses these; validate does before appendJSON runs
		}
		same(t, Document{Tenant: tenant, Seq: seq, IssuedAt: time.Unix(unix, 0).UTC(), ExpiresAt: time.Unix(unix, 5),
			KillSwitch: kill, RevokedAgents: []string{agent, jti}, RevokedJTIs: []string{jti}, Budgets: map[string]float64{budget: usd, agent: -usd}})
	})
}

// TestOpenRejectsShapes: members of the wrong JSON type, null, and a
// budget that is not a number are refused before the canonical check.
func TestOpenRejectsShapes(t *testing.T) {
	priv := key(1)
	pub := priv.Public().(ed25519.PublicKey)
	payload, _ := Encode(doc())
	swap := func(old, new string) []byte { return signRaw(priv, strings.Replace(string(payload), old, new, 1)) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"null list", swap(`["eve","mallory"]`, `null`), "revoked_agents"},
		{"list of numbers", swap(`["j1","j2"]`, `[1]`), "revoked_jtis[0]"},
		{"budget string", swap(`12.5`, `"12.5"`), `budgets.billing-agent`},
		{"budgets array", swap(`{"billing-agent":12.5,"support-agent":0}`, `[]`), "budgets"},
		{"time number", swap(`"2026-11-24T01:00:00Z"`, `1`), "issued_at"},
		{"time not RFC 3339", swap(`"2026-11-24T01:00:00Z"`, `"2026-11-24 01:00:00"`), "issued_at"},
		{"kill switch string", swap(`false`, `"false"`), "kill_switch"},
		{"seq fraction", swap(`"seq":7`, `"seq":7.0`), "seq"},
		{"envelope null", []byte(`{"payload":null,"signature":""}`), "payload"},
		{"envelope case", []byte(`{"Payload":"","signature":""}`), "Payload"},
		{"envelope invalid UTF-8", []byte("{\"payload\":\"\xff\",\"signature\":\"\"}"), "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.data, pub)
			if !errors.Is(err, ErrMalformed) || d != nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v, %v; want ErrMalformed mentioning %q", d, err, tt.want)
			}
		})
	}
}
