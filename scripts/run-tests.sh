#!/usr/bin/env bash
# The full suite (what `make test` and CI run):
#   1. lint: ruff and mypy --strict on the core and on networking-tortie;
#   2. the core suite with pytest, spread over the machine's cores (unit, calc, integration with real
#      etcd / BIRD / nftables / namespaces, e2e labs);
#   3. networking-tortie inside OpenStack Neutron's real ML2 plugin, in its own virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== lint"
ruff check src tests bench integrations/neutron
mypy --strict
(cd integrations/neutron && ../../.venv/bin/mypy --strict networking_tortie)

echo "== pytest (core)"
python -m pytest -n "${TORTIE_TEST_WORKERS:-3}" --dist loadfile tests "$@"

echo "== pytest (networking-tortie in Neutron)"
bash scripts/setup-neutron.sh
.venv-neutron/bin/python -m pytest integrations/neutron/tests
