package cplink

import (
	"encoding/base64"
	"testing"
)

func TestTokenTenant(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ tok, want string }{
		{enc(`{"alg":"EdDSA"}`) + "." + enc(`{"sub":"node-1","tenant":"acme"}`) + ".sig", "acme"},
		{"", ""},
		{"not-a-jwt", ""},
		{"a.!!!.c", ""},
		{enc(`{}`) + "." + enc(`[1,2]`) + ".sig", ""},
		{enc(`{}`) + "." + enc(`{"tenant":"acme"}`), ""},
	} {
		if got := TokenTenant(tc.tok); got != tc.want {
			t.Errorf("TokenTenant(%q) = %q, want %q", tc.tok, got, tc.want)
		}
	}
}
