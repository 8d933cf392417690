#!/usr/bin/env bash
# Idempotent setup of .venv-neutron: the virtualenv in which networking-tortie is tested against
# OpenStack Neutron's real ML2 plugin (in-process, in-memory SQLite).
#
# It holds: neutron 29 (from PyPI), the test dependencies Neutron's own test base needs
# (testtools, oslotest, WebTest) plus pytest, tortie (editable, from this repository) and
# networking-tortie (editable, integrations/neutron). Neutron stays out of the main .venv: the
# core package never imports it.
#
# Re-running is cheap: a stamp file records what was installed and is compared with the two
# pyproject.toml files and this script; only when one of them is newer does pip run again.
#
#     bash scripts/setup-neutron.sh && .venv-neutron/bin/python -m pytest integrations/neutron/tests
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-neutron
NEUTRON_SPEC=${TORTIE_NEUTRON_SPEC:-"neutron>=29,<30"}
TEST_DEPS=(pytest pytest-timeout testtools oslotest WebTest)
stamp=$VENV/.tortie-neutron-installed

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "setup-neutron: no python >= 3.11 found (run scripts/setup.sh first)" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi

needs_install=0
if [ ! -f "$stamp" ]; then
  needs_install=1
else
  for f in pyproject.toml integrations/neutron/pyproject.toml scripts/setup-neutron.sh; do
    if [ "$f" -nt "$stamp" ]; then needs_install=1; fi
  done
fi

if [ "$needs_install" -eq 1 ]; then
  echo "setup-neutron: installing $NEUTRON_SPEC and networking-tortie into $VENV (first run takes ~1 min)"
  log=$VENV/pip.log
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
         "$VENV/bin/python" -m pip install -q "$NEUTRON_SPEC" "${TEST_DEPS[@]}" &&
         "$VENV/bin/python" -m pip install -q -e . -e integrations/neutron; } >"$log" 2>&1; then
    echo "setup-neutron: pip install failed; see $log" >&2
    grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -20 >&2
    exit 1
  fi
  touch "$stamp"
fi

# Fail early (and clearly) if the entry point is not visible to Neutron's driver loader.
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import entry_points
names = {ep.name for ep in entry_points(group="neutron.ml2.mechanism_drivers")}
if "tortie" not in names:
    raise SystemExit("setup-neutron: entry point neutron.ml2.mechanism_drivers:tortie is missing")
EOF
