// Package extauthz is the baseline Aegis is measured against: the
// ext_authz way of deciding, as OPA-Envoy does it. An authorization server
// speaks Envoy's envoy.service.auth.v3 gRPC API and decides with OPA's Go
// evaluator (a prepared query on the same generated Rego); a small proxy
// calls it once per request, with the buffered body, the way Envoy's
// ext_authz filter does, and forwards what it allows.
//
// The decision is the same one the filter makes: the token is verified
// (package token, with a per-token cache as in the filter), the input
// document is built by package input, and package decide combines the
// result. Only the evaluator differs, so the comparison isolates the
// architecture (a gRPC round trip per request, OPA's evaluator) from the
// policy.
package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/rego"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/aegis-mesh/aegis/decide"
	"github.com/aegis-mesh/aegis/engine"
	"github.com/aegis-mesh/aegis/input"
	"github.com/aegis-mesh/aegis/policies"
	"github.com/aegis-mesh/aegis/token"
)

// opaEvaluator runs the decision on OPA's Go evaluator behind the
// interface package decide takes.
type opaEvaluator struct {
	pq rego.PreparedEvalQuery
}

var _ decide.Evaluator = (*opaEvaluator)(nil)

func (o *opaEvaluator) EvalOne(ctx context.Context, _ string, doc engine.Value) (engine.Value, bool, error) {
	rs, err := o.pq.Eval(ctx, rego.EvalInput(engine.ToGoWith(doc, opaNumber)))
	if err != nil {
		return nil, false, fmt.Errorf("opa: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, false, nil
	}
	raw, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return nil, false, fmt.Errorf("opa result: %w", err)
	}
	v, err := engine.FromJSON(raw)
	if err != nil {
		return nil, false, fmt.Errorf("opa result: %w", err)
	}
	return v, true, nil
}

// Server is the authorization server.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	decider *decide.Decider
	tokens  *token.Verifier
	tenant  string
	region  string
	now     func() time.Time
}

// NewServer prepares OPA's evaluator on c's Rego and trusts the JWKS.
// region is the node region the decisions are made for.
func NewServer(ctx context.Context, c *policies.Compiled, jwks []byte, region string) (*Server, error) {
	pq, err := c.Topdown(ctx, decide.Entrypoint)
	if err != nil {
		return nil, err
	}
	ks, err := token.ParseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	opts := input.Options{MaxBodyBytes: int(c.MaxBodyBytes)}
	for _, e := range c.MCPEndpoints {
		opts.MCPEndpoints = append(opts.MCPEndpoints, input.MCPEndpoint{Server: e.Server, Host: e.Host, Path: e.Path})
	}
	return &Server{
		decider: decide.New(&opaEvaluator{pq: pq}, opts),
		tokens:  token.NewVerifier(ks, token.VerifyOptions{Tenant: c.Tenant}, 1024),
		tenant:  c.Tenant, region: region, now: time.Now,
	}, nil
}

// Check implements authv3.AuthorizationServer. Anything it cannot decide
// is denied: a missing or bad token (401), a request the policy refuses
// (403), and a sanitize decision, which ext_authz cannot carry out (it has
// no way to replace the request body), so the unredacted body never goes
// through.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return deny(typev3.StatusCode_BadRequest, "no http attributes"), nil
	}
	auth := h.GetHeaders()["authorization"]
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return deny(typev3.StatusCode_Unauthorized, "missing bearer token"), nil
	}
	claims, err := s.tokens.Verify(tok, s.now())
	if err != nil {
		return deny(typev3.StatusCode_Unauthorized, "invalid token"), nil
	}
	in := input.Request{Method: h.GetMethod(), Scheme: h.GetScheme(), Authority: h.GetHost(), Path: h.GetPath()}
	if in.Scheme == "" {
		in.Scheme = "http"
	}
	for k, v := range h.GetHeaders() {
		if k == "authorization" || strings.HasPrefix(k, ":") {
			continue
		}
		in.Headers = append(in.Headers, [2]string{k, v})
	}
	if raw := h.GetRawBody(); raw != nil {
		in.Body = raw
	} else if b := h.GetBody(); b != "" {
		in.Body = []byte(b)
	}
	id := input.Identity{Agent: token.Agent(claims), Tenant: claims.Tenant, Chain: token.Chain(claims), Region: claims.Region,
		Scope: claims.Scopes(), Claims: engine.NewObject(0)}
	out, err := s.decider.Decide(ctx, in, id, input.Context{Region: s.region, Time: s.now()})
	if err != nil {
		return nil, fmt.Errorf("deciding: %w", err)
	}
	if out.Decision.Action != decide.Allow {
		return deny(typev3.StatusCode_Forbidden, string(out.Decision.Action)), nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-aegis-decision", Value: "allow"}}},
		}},
	}, nil
}

func deny(status typev3.StatusCode, reason string) *authv3.CheckResponse {
	body, _ := json.Marshal(map[string]string{"error": "denied", "reason": reason})
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: status},
			Body:   string(body),
		}},
	}
}

// opaNumber gives OPA numbers as json.Number, which it reads directly;
// engine.ToGo's own number type would cost it a JSON round trip each and
// slow the baseline this server measures.
func opaNumber(lit string) any { return json.Number(lit) }
