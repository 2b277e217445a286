#!/usr/bin/env bash
# Verifies an aegis-signed bundle with third-party tools: openssl (pure
# Ed25519 over manifest.json) and sigstore's cosign (verify-blob, offline,
# no transparency log). cosign is built from source into .cache/bin the
# first time (several minutes); it never enters go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
COSIGN_VERSION=${COSIGN_VERSION:-v2.6.2}
bin=$PWD/.cache/bin
if [ ! -x "$bin/cosign" ]; then
  echo "building cosign $COSIGN_VERSION into $bin (one time)…"
  GOBIN=$bin go install "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION"
fi
AEGIS=${AEGIS:-./build/aegis}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$AEGIS keys generate --out "$work/keys" >/dev/null
$AEGIS policy compile policies/examples/payments.yaml -o "$work/b.tar.gz" --sign-key "$work/keys/aegis.key" --created-at 2026-11-20T00:00:00Z >/dev/null
tar -xzf "$work/b.tar.gz" -C "$work" manifest.json manifest.sig
base64 -d "$work/manifest.sig" > "$work/sig.bin"
echo "== openssl"
openssl pkeyutl -verify -pubin -inkey "$work/keys/aegis.pub" -rawin -in "$work/manifest.json" -sigfile "$work/sig.bin"
echo "== cosign $COSIGN_VERSION"
"$bin/cosign" verify-blob --key "$work/keys/aegis.pub" --signature "$work/manifest.sig" \
  --insecure-ignore-tlog=true "$work/manifest.json"
echo "== a tampered manifest must fail"
sed -i 's/"revision": *1/"revision": 2/' "$work/manifest.json"
if "$bin/cosign" verify-blob --key "$work/keys/aegis.pub" --signature "$work/manifest.sig" \
     --insecure-ignore-tlog=true "$work/manifest.json" 2>/dev/null; then
  echo "FAIL: cosign accepted a tampered manifest"; exit 1
fi
echo "tampered manifest rejected"
