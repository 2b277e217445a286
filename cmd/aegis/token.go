package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/token"
)

// maxTokenTTL bounds --ttl: agent tokens are meant to be short-lived.
const maxTokenTTL = 24 * time.Hour

func tokenCommands() []command {
	return []command{
		{name: "mint", summary: "sign an agent token (EdDSA JWT)", run: runTokenMint},
		{name: "jwks", summary: "print a JWKS document for public keys", run: runTokenJWKS},
		{name: "verify", summary: "verify an agent token and print its claims", run: runTokenVerify},
	}
}

func runTokenMint(_ context.Context, args []string, io stdio) int {
	fs := flagSet("token mint", "", `
Mint an agent token: a compact JWS JWT signed with Ed25519 (alg EdDSA), kid =
the key's RFC 7638 thumbprint, a random 128-bit jti, iat = nbf = now and
exp = now + --ttl. Prints the token.

Delegation follows RFC 8693: "--agent A --acting-for P1 --acting-for P2"
means A acts for P1, who acts for P2. The token's sub is P2 (the principal)
and act is {"sub":"A","act":{"sub":"P1"}}, the current actor outermost. The
chain holds at most 5 parties, none twice.`, io)
	keyPath := fs.String("key", "", "PKCS#8 PEM private key to sign with (required)")
	agent := fs.String("agent", "", "the acting agent (required)")
	tenant := fs.String("tenant", "", "tenant claim (required)")
	ttl := fs.Duration("ttl", 5*time.Minute, "lifetime, at most 24h")
	region := fs.String("region", "", "region claim")
	org := fs.String("org", "", "org claim")
	issuer := fs.String("issuer", "", "iss claim")
	var actingFor, scopes, audiences stringList
	fs.Var(&actingFor, "acting-for", "principal the agent acts for; repeat for a chain, nearest first")
	fs.Var(&scopes, "scope", "scope to grant; repeatable (joined with spaces into the scope claim)")
	fs.Var(&audiences, "audience", "aud value; repeatable")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	switch {
	case len(pos) != 0:
		fmt.Fprintf(io.err, "aegis token mint: unexpected argument %q\n", pos[0])
		return exitUsage
	case *keyPath == "" || *agent == "" || *tenant == "":
		fmt.Fprintln(io.err, "aegis token mint: --key, --agent and --tenant are required")
		return exitUsage
	case *ttl <= 0 || *ttl > maxTokenTTL:
		fmt.Fprintf(io.err, "aegis token mint: --ttl %s: want more than 0 and at most %s\n", *ttl, maxTokenTTL)
		return exitUsage
	}
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			fmt.Fprintf(io.err, "aegis token mint: --scope %q: a scope is one non-empty word\n", s)
			return exitUsage
		}
	}
	priv, err := loadPrivateKey(*keyPath)
	if err != nil {
		fmt.Fprintf(io.err, "aegis token mint: %s: %v\n", *keyPath, err)
		return exitFailure
	}
	now := time.Now()
	sub, act := token.Delegate(*agent, actingFor...)
	c := token.Claims{
		Issuer:    *issuer,
		Subject:   sub,
		Act:       act,
		Audience:  token.Audience(audiences),
		Tenant:    *tenant,
		Org:       *org,
		Scope:     strings.Join(scopes, " "),
		Region:    *region,
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		ExpiresAt: now.Add(*ttl).Unix(),
	}
	tok, err := token.Mint(priv, c)
	if err != nil {
		// Mint rejects only what the flags made (a repeated party, a chain
		// too long): an invocation problem.
		fmt.Fprintf(io.err, "aegis token mint: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(io.out, tok)
	return exitOK
}

func runTokenJWKS(_ context.Context, args []string, io stdio) int {
	fs := flagSet("token jwks", "", `
Print a JWKS document (RFC 7517) holding the given Ed25519 public keys, with
kty OKP, crv Ed25519, alg EdDSA, use sig and kid = RFC 7638 thumbprint: the
document a verifier loads to check tokens from "aegis token mint".`, io)
	var keyPaths stringList
	fs.Var(&keyPaths, "key", "PKIX PEM public key; repeat for several (required)")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(io.err, "aegis token jwks: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if len(keyPaths) == 0 {
		fmt.Fprintln(io.err, "aegis token jwks: at least one --key is required")
		return exitUsage
	}
	var pubs []ed25519.PublicKey
	for _, p := range keyPaths {
		pub, err := loadPublicKey(p)
		if err != nil {
			fmt.Fprintf(io.err, "aegis token jwks: %s: %v\n", p, err)
			return exitFailure
		}
		pubs = append(pubs, pub)
	}
	out, err := token.MarshalJWKS(pubs...)
	if err != nil {
		fmt.Fprintf(io.err, "aegis token jwks: %v\n", err)
		return exitFailure
	}
	io.out.Write(out)
	return exitOK
}

func runTokenVerify(_ context.Context, args []string, io stdio) int {
	fs := flagSet("token verify", "TOKEN", `
Verify an agent token exactly as the filter does (EdDSA only, kid looked up
in the key set, signature before claims, exp/nbf/iat with 60s skew, the
delegation chain bounded) and print its claims and chain as JSON. TOKEN "-"
reads the token from standard input. Exits 1 with the reason when the token
is refused.`, io)
	jwksPath := fs.String("jwks", "", "JWKS file with the accepted keys")
	var keyPaths stringList
	fs.Var(&keyPaths, "key", "PKIX PEM public key to accept; repeatable (instead of or besides --jwks)")
	issuer := fs.String("issuer", "", "require this iss")
	audience := fs.String("audience", "", "require aud to contain this value")
	tenant := fs.String("tenant", "", "require this tenant")
	at := fs.String("at", "", "verify as of this RFC 3339 time instead of now")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(io.err, "aegis token verify: want exactly one TOKEN argument (or - for stdin)")
		return exitUsage
	}
	if *jwksPath == "" && len(keyPaths) == 0 {
		fmt.Fprintln(io.err, "aegis token verify: --jwks or --key is required")
		return exitUsage
	}
	now, err := parseAt(*at)
	if err != nil {
		fmt.Fprintf(io.err, "aegis token verify: --at: %v\n", err)
		return exitUsage
	}
	ks, err := loadKeySet(*jwksPath, keyPaths)
	if err != nil {
		fmt.Fprintf(io.err, "aegis token verify: %v\n", err)
		return exitFailure
	}
	tok := pos[0]
	if tok == "-" {
		data, err := readLimited(io.in, token.DefaultMaxSize)
		if err != nil {
			fmt.Fprintf(io.err, "aegis token verify: stdin: %v\n", err)
			return exitFailure
		}
		tok = strings.TrimSpace(string(data))
	}
	c, err := token.Verify(tok, ks, token.VerifyOptions{Now: now, Issuer: *issuer, Audience: *audience, Tenant: *tenant})
	if err != nil {
		fmt.Fprintf(io.err, "aegis token verify: %v\n", err)
		return exitFailure
	}
	out, err := json.MarshalIndent(struct {
		Claims *token.Claims `json:"claims"`
		Chain  []string      `json:"chain"`
	}{c, token.Chain(c)}, "", "  ")
	if err != nil {
		fmt.Fprintf(io.err, "aegis token verify: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(io.out, "%s\n", out)
	return exitOK
}

// loadKeySet merges a JWKS file and PEM public keys into one key set.
func loadKeySet(jwksPath string, pemPaths []string) (*token.KeySet, error) {
	var pubs []ed25519.PublicKey
	for _, p := range pemPaths {
		pub, err := loadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		pubs = append(pubs, pub)
	}
	if jwksPath == "" {
		return token.NewKeySet(pubs...)
	}
	data, err := readFileMax(jwksPath, token.MaxJWKSBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", jwksPath, err)
	}
	if len(pubs) > 0 {
		extra, err := token.MarshalJWKS(pubs...)
		if err != nil {
			return nil, err
		}
		// Merge by concatenating the key arrays of both documents; ParseJWKS
		// then rejects a kid present in both.
		data, err = mergeJWKS(data, extra)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", jwksPath, err)
		}
	}
	ks, err := token.ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", jwksPath, err)
	}
	return ks, nil
}

func mergeJWKS(a, b []byte) ([]byte, error) {
	var da, db struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(a, &da); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &db); err != nil {
		return nil, err
	}
	da.Keys = append(da.Keys, db.Keys...)
	return json.Marshal(da)
}

// readLimited reads all of r, failing beyond max bytes.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("no standard input")
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("more than %d bytes", max)
	}
	return data, nil
}
