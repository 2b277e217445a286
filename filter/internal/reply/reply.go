// Package reply renders the bodies of the filter's local replies: the JSON
// errors plain HTTP clients get, and the JSON-RPC results MCP clients get so
// that the model sees why a tool call was refused.
package reply

import (
	"encoding/json"
	"strings"
)

// Error codes of local replies.
const (
	CodePolicyViolation = "policy_violation"
	CodeApprovalNeeded  = "approval_needed"
	CodeRateLimited     = "rate_limited"
	CodeUnauthorized    = "unauthorized"
	CodeNoBundle        = "no_bundle"
	CodeInternal        = "internal_error"

	CodeControlPlaneUnavailable = "control_plane_unavailable"
	CodeOverrideInvalid         = "override_invalid"          // bad signature, format, issuer, tenant
	CodeOverrideExpired         = "override_expired"          // past exp, or the control plane says so
	CodeOverrideMismatch        = "override_mismatch"         // another agent, tool or parameters
	CodeOverrideRedeemed        = "override_already_redeemed" // single use: already spent
	CodeKillSwitch              = "kill_switch"
	CodeRevoked                 = "revoked"
)

// Decision is the body of a deny, rate-limit or approval reply.
type Decision struct {
	Error         string   `json:"error"`
	DecisionID    string   `json:"decision_id"`
	Reasons       []string `json:"reasons"`
	PolicyVersion string   `json:"policy_version"`
	ApprovalID    string   `json:"approval_id,omitempty"`
	RetryWith     string   `json:"retry_with,omitempty"`
	Message       string   `json:"message,omitempty"`
}

// JSON renders d. Reasons is never null: clients iterate it.
func (d Decision) JSON() []byte {
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	return marshal(d)
}

// Error renders the API's {"error","message"} shape.
func Error(code, message string) []byte {
	return marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
}

// RPC is one JSON-RPC request to answer.
type RPC struct {
	ID   []byte // the request's id as JSON text
	Text string // why, for the model
}

// Meta goes into every JSON-RPC result's _meta.
type Meta struct {
	DecisionID string `json:"decision_id"`
	Action     string `json:"action"`
	ApprovalID string `json:"approval_id,omitempty"`
}

// MCP renders one JSON-RPC response per request, as a batch when the
// request was one. ok is false when there is no request with an id to
// answer (a batch of notifications): the caller replies with a plain error.
func MCP(rpcs []RPC, batch bool, meta Meta) (body []byte, ok bool) {
	type content struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type result struct {
		IsError bool      `json:"isError"`
		Content []content `json:"content"`
		Meta    Meta      `json:"_meta"`
	}
	type response struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  result          `json:"result"`
	}
	out := make([]response, 0, len(rpcs))
	for _, r := range rpcs {
		if len(r.ID) == 0 || !json.Valid(r.ID) {
			continue
		}
		out = append(out, response{"2.0", json.RawMessage(r.ID), result{true, []content{{"text", r.Text}}, meta}})
	}
	if len(out) == 0 {
		return nil, false
	}
	if batch {
		return marshal(out), true
	}
	return marshal(out[0]), true
}

// Reasons joins reasons into one line for a model to read.
func Reasons(action string, reasons []string) string {
	prefix := "denied by policy"
	switch action {
	case CodeApprovalNeeded:
		prefix = "needs approval"
	case CodeRateLimited:
		prefix = "rate limited"
	}
	if len(reasons) == 0 {
		return prefix
	}
	return prefix + ": " + strings.Join(reasons, "; ")
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only strings, slices and raw JSON validated above: cannot fail.
		panic("reply: " + err.Error())
	}
	return b
}
