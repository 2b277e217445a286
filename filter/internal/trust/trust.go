// Package trust reads the node's trust root: the public key that verifies
// policy bundles, the one that verifies live state, and the node's own
// signing key for audit batches; and the node's credential for the
// control plane.
//
// They come from the operator's deployment (Envoy
// vm_config.environment_variables, Istio WasmPlugin env), never from the
// plugin configuration: the channel that ships a bundle must not also ship
// the key that verifies it.
package trust

import (
	"crypto/ed25519"

	"github.com/aegis-mesh/aegis/internal/errs"
	"github.com/aegis-mesh/aegis/keys"
)

// Variable names, each holding a PEM key (PKIX public, PKCS#8 private).
const (
	EnvBundleKey = "AEGIS_BUNDLE_PUBLIC_KEY"
	EnvStateKey  = "AEGIS_STATE_PUBLIC_KEY"
	EnvNodeKey   = "AEGIS_NODE_SIGNING_KEY"
	// EnvNodeToken holds the bearer token the node presents on every
	// control-plane call (opaque to the filter).
	EnvNodeToken = "AEGIS_NODE_TOKEN"
)

// Root is the trust root. A nil BundleKey means no bundle can be trusted:
// the filter then runs with its no_bundle behaviour.
type Root struct {
	BundleKey ed25519.PublicKey
	StateKey  ed25519.PublicKey
	NodeKey   ed25519.PrivateKey
	NodeToken string
}

// Load reads the root through lookup (os.LookupEnv in the filter). An
// absent variable leaves its key nil; a present but invalid one is an
// error, so that a typo in the deployment stops the VM instead of quietly
// disabling verification.
func Load(lookup func(string) (string, bool)) (Root, error) {
	var r Root
	var err error
	if v, ok := lookup(EnvBundleKey); ok {
		if r.BundleKey, err = keys.ParsePublicPEM([]byte(v)); err != nil {
			return Root{}, errs.Errorf("%s: %w", EnvBundleKey, err)
		}
	}
	if v, ok := lookup(EnvStateKey); ok {
		if r.StateKey, err = keys.ParsePublicPEM([]byte(v)); err != nil {
			return Root{}, errs.Errorf("%s: %w", EnvStateKey, err)
		}
	}
	if v, ok := lookup(EnvNodeKey); ok {
		if r.NodeKey, err = keys.ParsePrivatePEM([]byte(v)); err != nil {
			return Root{}, errs.Errorf("%s: %w", EnvNodeKey, err)
		}
	}
	if v, ok := lookup(EnvNodeToken); ok {
		// It goes into an HTTP header: anything that could split or
		// smuggle a header is refused rather than sent.
		if v == "" || len(v) > 4096 {
			return Root{}, errs.Errorf("%s: empty or longer than 4096 bytes", EnvNodeToken)
		}
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] >= 0x7f {
				return Root{}, errs.Errorf("%s: byte %d is not a visible ASCII character", EnvNodeToken, i)
			}
		}
		r.NodeToken = v
	}
	return r, nil
}
