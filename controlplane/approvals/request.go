package approvals

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"unicode/utf8"

	"github.com/aegis-mesh/aegis/controlplane/auth"
	"github.com/aegis-mesh/aegis/token"
)

// MaxCreateBody bounds a create request.
const MaxCreateBody = 32 << 10

// CreateRequest is the body of POST /v1/approvals (API.md), as the filter
// sends it.
type CreateRequest struct {
	DecisionID     string   `json:"decision_id"`
	Tenant         string   `json:"tenant"`
	Agent          string   `json:"agent"`
	Chain          []string `json:"chain"`
	Tool           string   `json:"tool"`
	ParamsDigest   string   `json:"params_digest"`
	Reasons        []string `json:"reasons"`
	PolicyRevision int64    `json:"policy_revision"`
	Approvers      []string `json:"approvers"`
	ExpiresIn      int64    `json:"expires_in"` // seconds; 0: the default
	RequestSummary string   `json:"request_summary"`
}

var (
	reName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$`)
	reTool   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	reDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func validName(s string) bool { return reName.MatchString(s) }

// printable reports whether s is valid UTF-8 without control characters
// and at most n bytes: text that ends up in approvers' chat messages.
func printable(s string, n int) bool {
	if len(s) > n || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

// DecodeCreate decodes and validates a create request: one JSON object, no
// unknown members, every field well formed. The tenant is checked against
// the caller later.
func DecodeCreate(data []byte) (CreateRequest, error) {
	var req CreateRequest
	if len(data) > MaxCreateBody {
		return req, fmt.Errorf("body larger than %d bytes", MaxCreateBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, errors.New("body: trailing data after the JSON value")
	}
	return req, req.check()
}

func (r *CreateRequest) check() error {
	switch {
	case !printable(r.DecisionID, 128) || r.DecisionID == "":
		return errors.New("decision_id is missing or invalid")
	case r.Tenant != "" && !validName(r.Tenant):
		return errors.New("invalid tenant")
	case !validName(r.Agent):
		return errors.New("agent is missing or invalid")
	case len(r.Chain) > token.MaxChain:
		return fmt.Errorf("chain longer than %d", token.MaxChain)
	case len(r.Chain) > 0 && r.Chain[0] != r.Agent:
		return errors.New("chain must start with the acting agent")
	case len(r.Tool) > 256 || !reTool.MatchString(r.Tool):
		return errors.New("tool is missing or invalid")
	case !reDigest.MatchString(r.ParamsDigest):
		return errors.New("params_digest must be 64 lower-case hex digits")
	case len(r.Reasons) > 32:
		return errors.New("at most 32 reasons")
	case r.PolicyRevision < 0:
		return errors.New("policy_revision must not be negative")
	case len(r.Approvers) > 16:
		return errors.New("at most 16 approvers")
	case r.ExpiresIn < 0:
		return errors.New("expires_in must not be negative")
	case !printable(r.RequestSummary, 1024):
		return errors.New("request_summary longer than 1024 bytes or not printable")
	}
	seen := map[string]bool{}
	for _, a := range r.Chain {
		if !validName(a) || seen[a] {
			return errors.New("chain has an invalid or repeated agent")
		}
		seen[a] = true
	}
	for _, s := range r.Reasons {
		if !printable(s, 1024) {
			return errors.New("a reason is longer than 1024 bytes or not printable")
		}
	}
	for _, a := range r.Approvers {
		if !auth.ValidGroupName(a) {
			return errors.New("invalid approver")
		}
	}
	return nil
}
