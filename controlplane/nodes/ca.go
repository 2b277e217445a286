package nodes

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aegis-mesh/aegis/keys"
)

// CA is the control plane's certificate authority: Ed25519, self-signed,
// kept in the data directory. It issues node client certificates and,
// when the operator brings none, the API server certificate.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte
	key  ed25519.PrivateKey
}

// LoadOrCreateCA reads ca.pem and ca.key from dir, or creates them (key
// mode 0600). Replicas that share Postgres must share the CA files too;
// the control plane does not distribute its CA key.
func LoadOrCreateCA(dir string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist) {
		return createCA(dir, certPath, keyPath, now)
	}
	if cerr != nil || kerr != nil {
		return nil, fmt.Errorf("CA in %s: %w", dir, errors.Join(cerr, kerr))
	}
	key, err := keys.ParsePrivatePEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("CA certificate %s: want one CERTIFICATE PEM block", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("CA certificate %s does not match %s", certPath, keyPath)
	}
	return &CA{Cert: cert, PEM: certPEM, key: key}, nil
}

func createCA(dir, certPath, keyPath string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CA dir: %w", err)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Aegis control plane CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keys.MarshalPrivatePEM(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeExcl(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeExcl(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, PEM: certPEM, key: key}, nil
}

func writeExcl(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(err)
	}
	return n
}

// Pool returns a pool holding only this CA, for verifying node clients.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// identityURI is the one URI SAN of a node certificate; the tenant and the
// node id come from here and nowhere else.
func identityURI(tenant, nodeID string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: "aegis", Path: "/tenant/" + tenant + "/node/" + nodeID}
}

// IssueNode signs a client certificate for an enrolled node's key.
func (ca *CA) IssueNode(tenant, nodeID string, pub ed25519.PublicKey, now time.Time, ttl time.Duration) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{tenant}},
		URIs:         []*url.URL{identityURI(tenant, nodeID)},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// IssueServer makes a TLS server certificate for names (DNS names or IP
// addresses) with a fresh key, valid for a year.
func (ca *CA) IssueServer(names []string, now time.Time) (tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "aegis-controlplane"},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}, nil
}

// ErrNoIdentity is a TLS connection without a verified node certificate.
var ErrNoIdentity = errors.New("no verified node certificate")

// IdentityFromTLS returns the node id and tenant of a connection whose
// client certificate the TLS stack verified against the CA (the listener
// must set ClientCAs to Pool()). Unverified or foreign certificates fail.
// It does not check whether the node was disabled since; Store.Identity
// does.
func IdentityFromTLS(cs *tls.ConnectionState) (nodeID, tenant string, err error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", "", ErrNoIdentity
	}
	leaf := cs.VerifiedChains[0][0]
	if len(leaf.URIs) != 1 {
		return "", "", fmt.Errorf("%w: want exactly one URI SAN, have %d", ErrNoIdentity, len(leaf.URIs))
	}
	u := leaf.URIs[0]
	if u.Scheme != "spiffe" || u.Host != "aegis" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("%w: URI SAN %q is not an aegis node identity", ErrNoIdentity, u.String())
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "tenant" || parts[3] != "node" || parts[2] == "" || parts[4] == "" {
		return "", "", fmt.Errorf("%w: URI SAN %q is not an aegis node identity", ErrNoIdentity, u.String())
	}
	return parts[4], parts[2], nil
}
