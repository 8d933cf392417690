#!/usr/bin/env bash
# The full suite: lint (ruff, mypy --strict) then pytest, spread over the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== lint"
ruff check src tests bench
mypy --strict
echo "== pytest"
exec python -m pytest -n "${TORTIE_TEST_WORKERS:-3}" --dist loadfile tests "$@"
