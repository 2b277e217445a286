package livestate

import (
	"crypto/ed25519"

	"github.com/aegis-mesh/aegis/keys"
)

func marshalPub(pub ed25519.PublicKey) ([]byte, error) { return keys.MarshalPublicPEM(pub) }
func keyID(pub ed25519.PublicKey) string               { return keys.KeyID(pub) }
