// Package reply renders the bodies of the filter's local replies: the JSON
// errors plain HTTP clients get, and the JSON-RPC results MCP clients get so
// that the model sees why a tool call was refused.
package reply

import (
	"strings"

	"github.com/aegis-mesh/aegis/internal/jsonx"
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

// JSON renders d. Reasons is never null: clients iterate it. The bytes
// are those encoding/json wrote for the struct (tested).
func (d Decision) JSON() []byte {
	var w jsonx.Writer
	w.BeginObject()
	w.Key("error")
	w.String(d.Error)
	w.Key("decision_id")
	w.String(d.DecisionID)
	w.Key("reasons")
	w.Strings(d.Reasons)
	w.Key("policy_version")
	w.String(d.PolicyVersion)
	optional(&w, "approval_id", d.ApprovalID)
	optional(&w, "retry_with", d.RetryWith)
	optional(&w, "message", d.Message)
	w.EndObject()
	return w.B
}

// optional writes a member that is left out when empty (omitempty).
func optional(w *jsonx.Writer, key, s string) {
	if s != "" {
		w.Key(key)
		w.String(s)
	}
}

// Error renders the API's {"error","message"} shape.
func Error(code, message string) []byte {
	var w jsonx.Writer
	w.BeginObject()
	w.Key("error")
	w.String(code)
	w.Key("message")
	w.String(message)
	w.EndObject()
	return w.B
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
	var w jsonx.Writer
	if batch {
		w.BeginArray()
	}
	n := 0
	for _, r := range rpcs {
		// What encoding/json's Valid accepted, so that the same ids are
		// answered as before.
		if len(r.ID) == 0 || !jsonx.Valid(r.ID, jsonx.Options{Lenient: true, MaxDepth: 10000}) {
			continue
		}
		n++
		w.BeginObject()
		w.Key("jsonrpc")
		w.String("2.0")
		w.Key("id")
		w.Raw(jsonx.AppendCompact(nil, r.ID, true)) // byte for byte what encoding/json wrote for the RawMessage
		w.Key("result")
		w.BeginObject()
		w.Key("isError")
		w.Bool(true)
		w.Key("content")
		w.BeginArray()
		w.BeginObject()
		w.Key("type")
		w.String("text")
		w.Key("text")
		w.String(r.Text)
		w.EndObject()
		w.EndArray()
		w.Key("_meta")
		w.BeginObject()
		w.Key("decision_id")
		w.String(meta.DecisionID)
		w.Key("action")
		w.String(meta.Action)
		optional(&w, "approval_id", meta.ApprovalID)
		w.EndObject()
		w.EndObject()
		w.EndObject()
		if !batch {
			// A single request has one id to answer.
			return w.B, true
		}
	}
	if n == 0 {
		return nil, false
	}
	w.EndArray()
	return w.B, true
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
