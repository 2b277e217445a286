package token

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// TestMintGolden pins a token minted from a fixed key, claims and jti.
// Ed25519 is deterministic, so the bytes only change when the header, the
// claim order or the encoding does — which every verifier would notice.
func TestMintGolden(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	c := baseClaims()
	c.ID = "AAAAAAAAAAAAAAAAAAAAAA"
	got, err := Mint(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	const want = "eyJhbGciOiJFZERTQSIsImtpZCI6ImF0WlI2M3RORzNXMkdoUHBWbGVLbmZydzFON042TEFxT2U1Z3JFMlNCUjQiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2NwLmV4YW1wbGUiLCJzdWIiOiJvcmctYWRtaW4iLCJhdWQiOlsiYWVnaXMiXSwidGVuYW50IjoiYWNtZSIsIm9yZyI6ImZpbmFuY2UiLCJzY29wZSI6InBheW1lbnRzOndyaXRlIHRvb2xzOnJlYWQiLCJyZWdpb24iOiJldS13ZXN0LTEiLCJleHAiOjE3OTM1MzQ3MDAsIm5iZiI6MTc5MzUzNDQwMCwiaWF0IjoxNzkzNTM0NDAwLCJqdGkiOiJBQUFBQUFBQUFBQUFBQUFBQUFBQUFBIiwiYWN0Ijp7InN1YiI6ImFnZW50LWEiLCJhY3QiOnsic3ViIjoidXNlci0xIn19fQ.REMrer0-YmoiGoBeXM_5TydotcsyuFrVKXlluU0irJW3EINuH7iyrkMTrb9L3Dv_dM09E8Rrhb69MmrKVjMQBg"
	if got != want {
		t.Fatalf("token changed:\n got %s\nwant %s", got, want)
	}
}
