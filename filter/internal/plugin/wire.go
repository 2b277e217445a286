package plugin

import (
	"strconv"
	"strings"

	"github.com/aegis-mesh/aegis/internal/jsonx"
)

// The JSON the plugin exchanges with the control plane and hands to the
// policy, read and written with jsonx so that encoding/json stays out of
// the module (issue 3). What is written is byte for byte what
// encoding/json wrote for the structs (tested).

// vmConfig is the VM configuration: trust-root variables for those the
// environment does not set.
type vmConfig struct {
	Bundle, State, Node, Token string
}

// decodeVMConfig reads the VM configuration strictly: it carries the trust
// root, so an unknown or misspelt variable is an error, not a key that
// silently fails to load.
func decodeVMConfig(data []byte) (vmConfig, error) {
	var c vmConfig
	v, err := jsonx.Parse(data)
	if err != nil {
		return c, err
	}
	o, err := v.AsObject("")
	if err != nil {
		return c, err
	}
	o.String("AEGIS_BUNDLE_PUBLIC_KEY", &c.Bundle)
	o.String("AEGIS_STATE_PUBLIC_KEY", &c.State)
	o.String("AEGIS_NODE_SIGNING_KEY", &c.Node)
	o.String("AEGIS_NODE_TOKEN", &c.Token)
	return c, o.End()
}

// controlPlaneObject starts reading a control-plane answer: one JSON
// object, duplicate keys and invalid UTF-8 refused like everywhere else.
func controlPlaneObject(data []byte) (*jsonx.Obj, error) {
	v, err := jsonx.Parse(data)
	if err != nil {
		return nil, err
	}
	return v.AsObject("")
}

// endControlPlane finishes a control-plane answer. Members the plugin does
// not read are ignored, as encoding/json ignored them: a newer control
// plane may add some. A member that differs from a known one only in
// letter case is refused: encoding/json took it for the known one, so it
// is ambiguous rather than new.
func endControlPlane(o *jsonx.Obj, known ...string) error {
	if err := o.Err(); err != nil {
		return err
	}
	for _, m := range o.Rest() {
		for _, k := range known {
			if strings.EqualFold(m.Key, k) {
				return m.Value.Fail(o.Path(m.Key), "unknown member (names are case-sensitive: "+strconv.Quote(k)+")")
			}
		}
	}
	return nil
}

// decodeAuditConflict reads the body of a 409 to an audit batch.
func decodeAuditConflict(data []byte) (expectedSeq int64, err error) {
	o, err := controlPlaneObject(data)
	if err != nil {
		return 0, err
	}
	o.Int64("expected_seq", &expectedSeq)
	return expectedSeq, endControlPlane(o, "expected_seq")
}

// decodeApprovalCreated reads the answer to an approval request.
func decodeApprovalCreated(data []byte) (approvalID string, err error) {
	o, err := controlPlaneObject(data)
	if err != nil {
		return "", err
	}
	o.String("approval_id", &approvalID)
	return approvalID, endControlPlane(o, "approval_id")
}

// approvalStatus is the answer to polling an approval.
type approvalStatus struct {
	Status        string
	OverrideToken string
}

func decodeApprovalStatus(data []byte) (approvalStatus, error) {
	var r approvalStatus
	o, err := controlPlaneObject(data)
	if err != nil {
		return r, err
	}
	o.String("status", &r.Status)
	o.String("override_token", &r.OverrideToken)
	if err := endControlPlane(o, "status", "override_token"); err != nil {
		return approvalStatus{}, err
	}
	return r, nil
}

// appendJSON writes the redemption request.
func (r *redeemRequest) appendJSON(b []byte) []byte {
	w := jsonx.Writer{B: b}
	w.BeginObject()
	w.Key("token")
	w.String(r.Token)
	w.Key("tenant")
	w.String(r.Tenant)
	w.Key("agent")
	w.String(r.Agent)
	w.Key("tool")
	w.String(r.Tool)
	w.Key("params_digest")
	w.String(r.ParamsDigest)
	w.EndObject()
	return w.B
}

// appendJSON writes the approval request.
func (r *approvalRequest) appendJSON(b []byte) []byte {
	w := jsonx.Writer{B: b}
	w.BeginObject()
	w.Key("decision_id")
	w.String(r.DecisionID)
	w.Key("tenant")
	w.String(r.Tenant)
	w.Key("agent")
	w.String(r.Agent)
	w.Key("chain")
	nullableStrings(&w, r.Chain)
	w.Key("tool")
	w.String(r.Tool)
	w.Key("params_digest")
	w.String(r.ParamsDigest)
	w.Key("reasons")
	nullableStrings(&w, r.Reasons)
	w.Key("policy_revision")
	w.Int(r.PolicyRevision)
	w.Key("approvers")
	nullableStrings(&w, r.Approvers)
	w.Key("expires_in")
	w.Int(r.ExpiresIn)
	w.Key("request_summary")
	w.String(r.RequestSummary)
	w.EndObject()
	return w.B
}

// nullableStrings writes a nil slice as null, as encoding/json did; the
// control plane's reader takes null and [] alike.
func nullableStrings(w *jsonx.Writer, ss []string) {
	if ss == nil {
		w.Null()
		return
	}
	w.Strings(ss)
}
