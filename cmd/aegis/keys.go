package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aegis-mesh/aegis/keys"
)

// Key file names written by `aegis keys generate`.
const (
	privateKeyFile = "aegis.key"
	publicKeyFile  = "aegis.pub"
	// maxKeyFileBytes bounds key and JWKS reads; real ones are a few
	// hundred bytes.
	maxKeyFileBytes = 64 << 10
)

func keysCommands() []command {
	return []command{
		{name: "generate", summary: "write a new Ed25519 key pair (aegis.key, aegis.pub)", run: runKeysGenerate},
	}
}

func runKeysGenerate(_ context.Context, args []string, io stdio) int {
	fs := flagSet("keys generate", "", `
Generate an Ed25519 key pair for signing bundles and tokens.

Writes DIR/aegis.key (PKCS#8 "PRIVATE KEY" PEM, mode 0600) and DIR/aegis.pub
(PKIX "PUBLIC KEY" PEM), the formats openssl and cosign read, and prints the
key id (RFC 7638 thumbprint) that tokens carry as "kid". Existing files are
never replaced unless --force is given.`, io)
	out := fs.String("out", "", "directory to write the key pair to (created if missing; required)")
	force := fs.Bool("force", false, "overwrite existing key files")
	pos, code, ok := parseArgs(fs, args, io)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(io.err, "aegis keys generate: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if *out == "" {
		fmt.Fprintln(io.err, "aegis keys generate: --out DIR is required")
		return exitUsage
	}
	privPath := filepath.Join(*out, privateKeyFile)
	pubPath := filepath.Join(*out, publicKeyFile)
	if !*force {
		for _, p := range []string{privPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				fmt.Fprintf(io.err, "aegis keys generate: %s already exists (use --force to replace it)\n", p)
				return exitFailure
			}
		}
	}
	priv, err := keys.Generate(rand.Reader)
	if err != nil {
		fmt.Fprintf(io.err, "aegis keys generate: %v\n", err)
		return exitFailure
	}
	privPEM, err := keys.MarshalPrivatePEM(priv)
	if err != nil {
		fmt.Fprintf(io.err, "aegis keys generate: %v\n", err)
		return exitFailure
	}
	pub := priv.Public().(ed25519.PublicKey)
	pubPEM, err := keys.MarshalPublicPEM(pub)
	if err != nil {
		fmt.Fprintf(io.err, "aegis keys generate: %v\n", err)
		return exitFailure
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(io.err, "aegis keys generate: %v\n", err)
		return exitFailure
	}
	if err := writeKeyFile(privPath, privPEM, 0o600, *force); err != nil {
		fmt.Fprintf(io.err, "aegis keys generate: %s: %v\n", privPath, err)
		return exitFailure
	}
	if err := writeKeyFile(pubPath, pubPEM, 0o644, *force); err != nil {
		fmt.Fprintf(io.err, "aegis keys generate: %s: %v\n", pubPath, err)
		return exitFailure
	}
	fmt.Fprintf(io.out, "wrote %s (private: keep it secret) and %s\nkid %s\n", privPath, pubPath, keys.KeyID(pub))
	return exitOK
}

// writeKeyFile writes data with mode perm. Without force it refuses to
// follow or replace anything already at path (O_EXCL), closing the gap
// between the existence check and the write. With force the file is
// replaced and its mode reset, so an old world-readable file cannot keep
// a new private key readable.
func writeKeyFile(path string, data []byte, perm os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readFileMax reads at most max bytes of path and fails if there is more,
// so that a wrong argument (a disk image, /dev/zero) cannot exhaust memory.
func readFileMax(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return data, nil
}

func loadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readFileMax(path, maxKeyFileBytes)
	if err != nil {
		return nil, err
	}
	return keys.ParsePublicPEM(data)
}

func loadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readFileMax(path, maxKeyFileBytes)
	if err != nil {
		return nil, err
	}
	return keys.ParsePrivatePEM(data)
}
