package xds

import (
	"context"
	"crypto/x509"
	"errors"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ErrNoPeerCertificate is returned by PeerCertificate when the stream did
// not come over TLS with a verified client certificate.
var ErrNoPeerCertificate = errors.New("no verified client certificate")

// PeerCertificate returns the verified leaf client certificate of the gRPC
// call whose context is ctx, for Identity implementations. Only a chain
// the TLS handshake verified counts; a certificate merely presented does
// not.
func PeerCertificate(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, ErrNoPeerCertificate
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, ErrNoPeerCertificate
	}
	return ti.State.VerifiedChains[0][0], nil
}
