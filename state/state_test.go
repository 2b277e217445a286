package state

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 1, 0, 0, 0, time.UTC)

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
}

func doc() Document {
	return Document{
		Tenant: "acme", Seq: 7, IssuedAt: t0, ExpiresAt: t0.Add(time.Minute),
		KillSwitch: false, RevokedAgents: []string{"mallory", "eve", "eve"}, RevokedJTIs: []string{"j2", "j1"},
		Budgets: map[string]float64{"billing-agent": 12.5, "support-agent": 0},
	}
}

// signRaw signs arbitrary payload bytes, to test what Open refuses even
// when the signature is good.
func signRaw(priv ed25519.PrivateKey, payload string) []byte {
	b, _ := json.Marshal(envelope{
		Payload:   base64.StdEncoding.EncodeToString([]byte(payload)),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(payload))),
	})
	return b
}

func TestRoundTrip(t *testing.T) {
	priv := key(1)
	env, err := Sign(priv, doc())
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(env, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if d.Tenant != "acme" || d.Seq != 7 || !d.IssuedAt.Equal(t0) || !d.ExpiresAt.Equal(t0.Add(time.Minute)) ||
		strings.Join(d.RevokedAgents, ",") != "eve,mallory" || strings.Join(d.RevokedJTIs, ",") != "j1,j2" {
		t.Errorf("document %+v", d)
	}
	payload, _ := Encode(doc())
	want := `{"budgets":{"billing-agent":12.5,"support-agent":0},"expires_at":"2026-11-24T01:01:00Z","issued_at":"2026-11-24T01:00:00Z",` +
		`"kill_switch":false,"revoked_agents":["eve","mallory"],"revoked_jtis":["j1","j2"],"seq":7,"tenant":"acme"}`
	if string(payload) != want {
		t.Errorf("payload\n got %s\nwant %s", payload, want)
	}
	if who, ok := d.Revoked([]string{"billing-agent", "mallory"}); !ok || who != "mallory" {
		t.Errorf("Revoked = %q %v", who, ok)
	}
	if _, ok := d.Revoked([]string{"billing-agent"}); ok {
		t.Error("billing-agent revoked")
	}
	if !d.RevokedJTI("j2") || d.RevokedJTI("j3") {
		t.Error("RevokedJTI")
	}
	if m, ok := d.RemainingMicroUSD("billing-agent"); !ok || m != 12_500_000 {
		t.Errorf("remaining %d %v", m, ok)
	}
	if _, ok := d.RemainingMicroUSD("nobody"); ok {
		t.Error("budget for an agent without one")
	}
	if d.Expired(t0.Add(59*time.Second)) || !d.Expired(t0.Add(time.Minute)) {
		t.Error("Expired boundary")
	}
	// Empty lists are written, so absent and empty mean the same bytes.
	bare := Document{Tenant: "acme", Seq: 1, IssuedAt: t0, ExpiresAt: t0.Add(time.Second)}
	if env, err := Sign(priv, bare); err != nil {
		t.Error(err)
	} else if _, err := Open(env, priv.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("bare document: %v", err)
	}
}

func TestSignRejects(t *testing.T) {
	edits := map[string]func(*Document){
		"no tenant":        func(d *Document) { d.Tenant = "" },
		"seq 0":            func(d *Document) { d.Seq = 0 },
		"no issued_at":     func(d *Document) { d.IssuedAt = time.Time{} },
		"expiry first":     func(d *Document) { d.ExpiresAt = d.IssuedAt },
		"fractional time":  func(d *Document) { d.IssuedAt = d.IssuedAt.Add(time.Millisecond) },
		"negative budget":  func(d *Document) { d.Budgets["x"] = -1 },
		"huge budget":      func(d *Document) { d.Budgets["x"] = 1e13 },
		"empty agent":      func(d *Document) { d.RevokedAgents = append(d.RevokedAgents, "") },
		"empty jti":        func(d *Document) { d.RevokedJTIs = []string{""} },
		"empty budget key": func(d *Document) { d.Budgets[""] = 1 },
	}
	for name, edit := range edits {
		d := doc()
		edit(&d)
		if _, err := Sign(key(1), d); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := Sign(key(1)[:5], doc()); err == nil {
		t.Error("signed with a short key")
	}
}

func TestOpenRejects(t *testing.T) {
	priv := key(1)
	pub := priv.Public().(ed25519.PublicKey)
	good, _ := Sign(priv, doc())
	payload, _ := Encode(doc())
	var env envelope
	json.Unmarshal(good, &env)
	sig := []byte(env.Signature)
	sig[5] ^= 0x01 // still base64, other bytes
	swap := func(old, new string) []byte { return signRaw(priv, strings.Replace(string(payload), old, new, 1)) }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not json", []byte("x"), ErrMalformed},
		{"unknown envelope member", []byte(`{"payload":"` + env.Payload + `","signature":"` + env.Signature + `","kid":"x"}`), ErrMalformed},
		{"duplicate payload", []byte(`{"payload":"e30=","payload":"` + env.Payload + `","signature":"` + env.Signature + `"}`), ErrMalformed},
		{"payload not base64", []byte(`{"payload":"!!","signature":"` + env.Signature + `"}`), ErrMalformed},
		{"unpadded payload", []byte(`{"payload":"` + strings.TrimRight(env.Payload, "=") + `x","signature":"` + env.Signature + `"}`), ErrMalformed},
		{"short signature", []byte(`{"payload":"` + env.Payload + `","signature":"AAAA"}`), ErrMalformed},
		{"tampered signature", []byte(`{"payload":"` + env.Payload + `","signature":"` + string(sig) + `"}`), ErrSignature},
		{"other key", mustSign(t, key(2), doc()), ErrSignature},
		{"tampered payload", []byte(`{"payload":"` + base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"seq":7`), []byte(`"seq":9`), 1)) + `","signature":"` + env.Signature + `"}`), ErrSignature},
		// Signed by the right key, but not one unambiguous document:
		{"not canonical: spaces", signRaw(priv, strings.Replace(string(payload), `,"seq"`, `, "seq"`, 1)), ErrMalformed},
		{"not canonical: order", swap(`"revoked_agents":["eve","mallory"]`, `"revoked_agents":["mallory","eve"]`), ErrMalformed},
		{"not canonical: offset", swap(`"2026-11-24T01:00:00Z"`, `"2026-11-24T02:00:00+01:00"`), ErrMalformed},
		{"case-folded key", swap(`"tenant"`, `"TENANT"`), ErrMalformed},
		{"unknown member", swap(`"tenant":"acme"`, `"tenant":"acme","x":1`), ErrMalformed},
		{"duplicate key", swap(`"seq":7`, `"seq":7,"seq":8`), ErrMalformed},
		{"missing member", swap(`"kill_switch":false,`, ``), ErrMalformed},
		{"wrong type", swap(`"seq":7`, `"seq":"7"`), ErrMalformed},
		{"negative budget", swap(`12.5`, `-12.5`), ErrMalformed},
		{"no tenant", swap(`"tenant":"acme"`, `"tenant":""`), ErrMalformed},
		{"trailing data", append(append([]byte{}, good...), ' ', '1'), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.data, pub)
			if !errors.Is(err, tt.want) || d != nil {
				t.Errorf("Open = %v, %v; want %v", d, err, tt.want)
			}
		})
	}
	if _, err := Open(good, nil); err == nil {
		t.Error("opened without a key")
	}
}

func mustSign(t *testing.T, priv ed25519.PrivateKey, d Document) []byte {
	t.Helper()
	b, err := Sign(priv, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheck(t *testing.T) {
	cur := doc()
	next := doc()
	tests := []struct {
		name    string
		current *Document
		seq     int64
		tenant  string
		want    error
	}{
		{"first", nil, 1, "acme", nil},
		{"newer", &cur, 8, "acme", nil},
		{"same seq", &cur, 7, "acme", nil},
		{"older", &cur, 6, "acme", ErrStale},
		{"other tenant", nil, 9, "globex", ErrTenant},
	}
	for _, tt := range tests {
		next.Seq = tt.seq
		if err := Check(tt.current, &next, tt.tenant); !errors.Is(err, tt.want) && (err != nil || tt.want != nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzOpen(f *testing.F) {
	priv := key(3)
	pub := priv.Public().(ed25519.PublicKey)
	good, _ := Sign(priv, doc())
	f.Add(good)
	f.Add([]byte(`{"payload":"","signature":""}`))
	f.Add(signRaw(priv, `{"tenant":"acme"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Open(data, pub)
		if err != nil {
			if d != nil {
				t.Fatal("document with error")
			}
			return
		}
		// Accepted → it re-signs to an envelope that opens to the same.
		again, err := Open(mustSign(t, priv, *d), pub)
		if err != nil || again.Seq != d.Seq || again.Tenant != d.Tenant {
			t.Fatalf("re-signed document: %+v %v", again, err)
		}
	})
}
