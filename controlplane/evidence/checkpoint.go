package evidence

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aegis-mesh/aegis/jcs"
	"github.com/aegis-mesh/aegis/keys"
)

// checkpointDomain prefixes the signed bytes of a checkpoint.
const checkpointDomain = "aegis-audit-checkpoint/v1\n"

// Checkpoint states that chain (NodeID, ChainID) of Tenant had Count events
// ending at Seq with hash Hash when the control plane signed it at Time.
// Rows deleted later no longer add up to it.
type Checkpoint struct {
	Tenant    string `json:"tenant"`
	NodeID    string `json:"node_id"`
	ChainID   string `json:"chain_id"`
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	Count     int64  `json:"count"`
	Time      string `json:"time"` // RFC 3339, UTC
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"` // hex Ed25519 over SignedBytes
}

// SignedBytes is the domain prefix followed by the JCS form of every field
// except the signature.
func (c Checkpoint) SignedBytes() []byte {
	b := []byte(checkpointDomain)
	b = append(b, `{"chain_id":`...)
	b = jcs.AppendString(b, c.ChainID)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, c.Count, 10)
	b = append(b, `,"hash":`...)
	b = jcs.AppendString(b, c.Hash)
	b = append(b, `,"key_id":`...)
	b = jcs.AppendString(b, c.KeyID)
	b = append(b, `,"node_id":`...)
	b = jcs.AppendString(b, c.NodeID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, c.Seq, 10)
	b = append(b, `,"tenant":`...)
	b = jcs.AppendString(b, c.Tenant)
	b = append(b, `,"time":`...)
	b = jcs.AppendString(b, c.Time)
	return append(b, '}')
}

// SignCheckpoint fills in KeyID and Signature.
func SignCheckpoint(priv ed25519.PrivateKey, c Checkpoint) (Checkpoint, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return c, errors.New("sign checkpoint: no evidence key")
	}
	if _, err := ParseHash(c.Hash); err != nil {
		return c, fmt.Errorf("sign checkpoint: hash: %w", err)
	}
	if _, err := time.Parse(time.RFC3339Nano, c.Time); err != nil {
		return c, fmt.Errorf("sign checkpoint: time: %w", err)
	}
	c.KeyID = keys.KeyID(priv.Public().(ed25519.PublicKey))
	c.Signature = hex.EncodeToString(ed25519.Sign(priv, c.SignedBytes()))
	return c, nil
}

// VerifyCheckpoint checks c's signature with pub.
func VerifyCheckpoint(pub ed25519.PublicKey, c Checkpoint) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("checkpoint: no public key")
	}
	if c.KeyID != keys.KeyID(pub) {
		return fmt.Errorf("checkpoint %s/%s seq %d: signed by key %q, not %q", c.NodeID, c.ChainID, c.Seq, c.KeyID, keys.KeyID(pub))
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, c.SignedBytes(), sig) {
		return fmt.Errorf("checkpoint %s/%s seq %d: signature does not verify", c.NodeID, c.ChainID, c.Seq)
	}
	return nil
}
