#!/usr/bin/env bash
# A tour of what Aegis does today, using only the aegis binary: keys,
# validation with located errors, compile + sign, verification (ours and
# openssl's), the example policy tables, tokens, and single decisions.
set -euo pipefail
cd "$(dirname "$0")/.."
AEGIS=${AEGIS:-./build/aegis}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ex=policies/examples
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. An Ed25519 signing key for bundles"
show $AEGIS keys generate --out "$work/keys"

step "2. Validate the reference policies"
show $AEGIS policy validate $ex

step "3. A broken policy is rejected with every error located"
sed -e 's/max: 50000/max: lots/' -e 's/tools: \[payments.create, invoices.\*\]/tools: [payments.create, invoice.*]/' \
    -e 's/  - name: memo_typo_marker//' -e 's/    kind: read$/    kind: reed/' $ex/payments.yaml > "$work/broken.yaml"
$AEGIS policy validate "$work/broken.yaml" || echo "(exit $? — as expected)"

step "4. Compile and sign (deterministic: same inputs + created-at → same bytes)"
show $AEGIS policy compile $ex/payments.yaml -o "$work/payments.tar.gz" --runtime "$work/payments.runtime.tar.gz" \
     --sign-key "$work/keys/aegis.key" --revision 7 --created-at 2026-11-20T00:00:00Z --valid-for 2160h
$AEGIS policy compile $ex/payments.yaml -o "$work/again.tar.gz" --sign-key "$work/keys/aegis.key" \
     --revision 7 --created-at 2026-11-20T00:00:00Z --valid-for 2160h >/dev/null
cmp "$work/payments.tar.gz" "$work/again.tar.gz" && echo "byte-identical: $(sha256sum < "$work/payments.tar.gz" | cut -c1-16)…"
show $AEGIS policy compile $ex/mcp-devops.yaml -o "$work/mcp.tar.gz" --sign-key "$work/keys/aegis.key" --created-at 2026-11-20T00:00:00Z

step "5. Verify the signature: with aegis, and with openssl (pure Ed25519 over manifest.json)"
show $AEGIS bundle verify --key "$work/keys/aegis.pub" "$work/payments.runtime.tar.gz"
mkdir -p "$work/x" && tar -xzf "$work/payments.tar.gz" -C "$work/x"
base64 -d "$work/x/manifest.sig" > "$work/x/sig.bin"
show openssl pkeyutl -verify -pubin -inkey "$work/keys/aegis.pub" -rawin -in "$work/x/manifest.json" -sigfile "$work/x/sig.bin"

step "6. The reference test tables"
show $AEGIS policy test $ex

step "7. An agent token (EdDSA JWT, billing-agent acting for support-agent) and the JWKS"
show $AEGIS token mint --key "$work/keys/aegis.key" --agent billing-agent --acting-for support-agent --tenant acme --region eu-west-1 --ttl 5m
show $AEGIS token jwks --key "$work/keys/aegis.pub"

step "8. Decisions, one request at a time"
req() { printf '%s' "$1" > "$work/req.json"; }
req '{"method":"POST","url":"https://payments.acme.internal/v1/payments","json":{"amount":120.5,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}}'
echo "-- a small payment"
$AEGIS policy eval --bundle "$work/payments.runtime.tar.gz" --key "$work/keys/aegis.pub" --request "$work/req.json" --agent billing-agent --region eu-west-1
req '{"method":"POST","url":"https://payments.acme.internal/v1/payments","json":{"amount":7500,"currency":"EUR","beneficiary_iban":"DE89370400440532013000"}}'
echo "-- a payment above the approval threshold"
$AEGIS policy eval --bundle "$work/payments.runtime.tar.gz" --request "$work/req.json" --agent billing-agent --region eu-west-1
req '{"method":"POST","url":"https://mail.acme.internal/send","json":{"to":"ops@acme.example","subject":"refund","body":"card 4111 1111 1111 1111, iban DE89370400440532013000"}}'
echo "-- an email with a card number and an IBAN in it: redacted before the tool sees it"
$AEGIS policy eval --bundle "$work/payments.runtime.tar.gz" --request "$work/req.json" --agent support-agent --region eu-west-1
req '{"method":"POST","url":"https://payments.acme.internal/v1/payments","body":"{\"amount\":10,\"amount\":100000,\"currency\":\"EUR\",\"beneficiary_iban\":\"DE89370400440532013000\"}"}'
echo "-- a body with a duplicate key: ambiguous, so denied"
$AEGIS policy eval --bundle "$work/payments.runtime.tar.gz" --request "$work/req.json" --agent billing-agent --region eu-west-1

printf '\nDone. Everything above ran from %s; nothing was left behind.\n' "$AEGIS"
