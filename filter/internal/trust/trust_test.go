package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/aegis-mesh/aegis/keys"
)

func TestLoad(t *testing.T) {
	priv, err := keys.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := keys.MarshalPublicPEM(priv.Public().(ed25519.PublicKey))
	privPEM, _ := keys.MarshalPrivatePEM(priv)
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	r, err := Load(env(map[string]string{EnvBundleKey: string(pubPEM), EnvStateKey: string(pubPEM), EnvNodeKey: string(privPEM)}))
	if err != nil || !r.BundleKey.Equal(priv.Public()) || !r.StateKey.Equal(priv.Public()) || !r.NodeKey.Equal(priv) {
		t.Fatalf("Load = %+v, %v", r, err)
	}
	if r, err := Load(env(map[string]string{EnvNodeToken: "nt_abc.DEF-123"})); err != nil || r.NodeToken != "nt_abc.DEF-123" {
		t.Errorf("node token: %+v, %v", r, err)
	}
	r, err = Load(env(nil))
	if err != nil || r.BundleKey != nil || r.NodeKey != nil {
		t.Errorf("empty environment: %+v, %v", r, err)
	}
	bad := []map[string]string{
		{EnvBundleKey: "not pem"},
		{EnvBundleKey: ""},
		{EnvBundleKey: string(privPEM)}, // a private key where a public one belongs
		{EnvStateKey: "x"},
		{EnvNodeKey: string(pubPEM)},
		{EnvNodeToken: ""},
		{EnvNodeToken: "abc\r\nx-evil: 1"},
		{EnvNodeToken: "a b"},
		{EnvNodeToken: "caf\u00e9"},
		{EnvNodeToken: strings.Repeat("a", 4097)},
	}
	for _, m := range bad {
		if _, err := Load(env(m)); err == nil {
			t.Errorf("Load(%v) succeeded", keysOf(m))
		} else if !strings.Contains(err.Error(), "AEGIS_") {
			t.Errorf("error %q does not name the variable", err)
		}
	}
}

func keysOf(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
