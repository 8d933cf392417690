#!/usr/bin/env bash
# `make demo`: the main job as far as it exists today.
#
# Uses the embedded default datastore kind (SQLite) in a scratch file so a demo never touches a real
# installation: validates the example manifests, applies them, reads every kind back, changes one
# object, shows IPAM handing out addresses, and checks what it printed. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d /tmp/tortie-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
export TORTIE_DATASTORE="sqlite://$work/datastore.db"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step tortie version
step tortie validate -f examples/
step tortie apply -f examples/
step tortie get ippools -o wide
step tortie get globalnetworkpolicies
step tortie get networkpolicies -A
step tortie get tiers
step tortie get bgpconfiguration default -o yaml
step tortie label ippool default-ipv4-ippool demo=true
step tortie get ippool default-ipv4-ippool -o yaml

# Everything applied comes back unchanged (apart from store-maintained metadata).
tortie get ippools -o yaml > "$work/pools.yaml"
grep -q 'demo: "true"\|demo: '"'"'true'"'" "$work/pools.yaml" || { echo "demo: label not stored" >&2; exit 1; }
count=$(tortie get globalnetworkpolicies -o name | wc -l)
[ "$count" -ge 1 ] || { echo "demo: expected the example global policies back" >&2; exit 1; }

# A bad manifest is rejected whole, naming file, document and field; nothing is written.
cat > "$work/bad.yaml" <<'YAML'
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: half-good}
spec: {cidr: 10.99.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bad-pool}
spec: {cidr: 10.98.0.0/16, blockSize: 40}
YAML
printf '\n\033[1m$ tortie apply -f bad.yaml   (expected to fail)\033[0m\n'
if tortie apply -f "$work/bad.yaml"; then echo "demo: invalid manifest was accepted" >&2; exit 1; fi
if tortie get ippool half-good >/dev/null 2>&1; then echo "demo: partial apply happened" >&2; exit 1; fi
echo "(nothing was written)"

if tortie ipam --help >/dev/null 2>&1; then
  step tortie ipam show
fi
printf '\ndemo: OK\n'
