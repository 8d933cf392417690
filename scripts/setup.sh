#!/usr/bin/env bash
# Idempotent setup for tortie: Debian packages the project needs (installed only when missing)
# and a virtualenv in .venv with tortie and its dev dependencies.
#
# Safe to run repeatedly; `make demo` and `make test` call it first. Needs root for apt-get
# (skipped with a warning otherwise, so a non-root developer can still run the unit tests).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(iproute2 nftables bird2 etcd-server etcd-client iputils-ping procps psmisc gobgpd frr)
DEB_PACKAGES+=(podman runc conmon containernetworking-plugins busybox-static golang-go golang-github-appc-cni-dev)  # CNI tests: podman, libcni (cnitool), reference plugins
DEB_PACKAGES+=(dnsmasq-base busybox-static isc-dhcp-client)  # OpenStack/DHCP: tortie dhcp run (dnsmasq), VM DHCP clients (udhcpc; dhclient -6 for DHCPv6)
DEB_PACKAGES+=(iperf3)  # bench/policy_scale.py: dataplane throughput with policy loaded
DEB_PACKAGES+=(chromium chromium-driver)  # the web view's browser test (tortie ui), headless
DEB_PACKAGES+=(tcpdump)  # VXLAN proofs: captures in the lab's router and fabric namespaces

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
if [ -z "$PY" ]; then missing+=(python3); PY=/usr/bin/python3; fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A new machine may have no package lists yet; refresh them once if an install fails.
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/tortie-apt.log 2>&1; then
      apt-get update -q >>/tmp/tortie-apt.log 2>&1
      apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/tortie-apt.log 2>&1 \
        || { echo "setup: apt-get install failed; see /tmp/tortie-apt.log" >&2; tail -20 /tmp/tortie-apt.log >&2; exit 1; }
    fi
    # Debian starts etcd as a system service on install; tortie starts its own etcd processes on
    # free loopback ports, so the packaged service is stopped to keep 2379/2380 free for users.
    if printf '%s\n' "${missing[@]}" | grep -qx etcd-server; then
      (systemctl disable --now etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || true)
    fi
  else
    echo "setup: not root; skipping Debian packages (missing: ${missing[*]}); root-only tests will be skipped" >&2
  fi
fi

stamp=.venv/.tortie-installed
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
