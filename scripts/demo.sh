#!/usr/bin/env bash
# `make demo`: a virtual datacenter on this machine, and proof that it routes and polices.
#
#   1. `tortie lab up`: 3 hosts (each running `tortie node run`: agent + BGP daemon + BIRD) on one
#      dual-stack fabric (IPv4 and IPv6), a gobgpd top-of-rack router, the embedded SQLite datastore;
#   2. 6 workloads through the CNI plugin, as Kubernetes pods (CNI_ARGS K8S_POD_NAMESPACE/NAME, profile
#      kns.<namespace>): frontends and webs in namespace "shop" on h1 and h2, a database in "shop" and
#      an "intruder" frontend in namespace "default" on h3;
#   3. `tortie node status` and the BGP-learned routes: CHECKED (every host routes every other host's
#      workloads via that host);
#   4. the tcp/80 connectivity matrix: CHECKED (everything allowed, no policy yet);
#   5. `tortie apply` of examples/tiers.yaml + examples/policies.yaml (default deny + allow by label);
#   6. the matrix again: CHECKED (only shop's frontends reach shop's webs);
#   7. `tortie apply` of examples/kubernetes-shop.yaml: a Kubernetes NetworkPolicy (web pods may call
#      the database) next to the Calico policies; the matrix: CHECKED (the webs reach the database
#      too), and `tortie policy trace` of a denied packet, explained in the Kubernetes policy's terms;
#   8. the same policy over IPv6: one probe allowed, one denied, CHECKED;
#   9. `tortie lab down` (also on failure or Ctrl-C).
#
# Exits non-zero when anything differs from what is expected. Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
LAB=${TORTIE_DEMO_LAB:-demo}
export TORTIE_LAB=$LAB
started=$(date +%s.%N)

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (it builds network namespaces); run: sudo make demo" >&2
  exit 1
fi

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
fail() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  rc=$?
  printf '\n\033[1m$ tortie lab down\033[0m\n'
  tortie lab down || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A demo lab left behind by an interrupted run is removed first (it is ours: same name).
tortie lab down >/dev/null 2>&1 || true

step tortie lab up --hosts 3 --tor gobgp
for spec in "frontend-1 h1 shop role=frontend" "web-1 h1 shop app=web" \
            "frontend-2 h2 shop role=frontend" "web-2 h2 shop app=web" \
            "db-1 h3 shop app=db" "intruder h3 default role=frontend"; do
  read -r name host ns labels <<<"$spec"
  printf '\033[1m$ tortie lab workload add %s --host %s --namespace %s --labels %s\033[0m\n' \
    "$name" "$host" "$ns" "$labels"
  tortie lab workload add "$name" --host "$host" --namespace "$ns" --labels "$labels"
done
eval "$(tortie lab env)"

# Routes: every host must route every workload of another host via that host's fabric address,
# with routes BIRD learned over BGP (kernel protocol "bird"). New blocks take a moment to travel, so
# this waits up to 20 s for them before showing anything.
python - <<'PY' || fail "BGP-learned routes differ from the expected ones"
import ipaddress, json, subprocess, time
def problems():
    status = json.loads(subprocess.run(["tortie", "lab", "status", "-o", "json"], check=True,
                                       capture_output=True, text=True).stdout)
    hosts = {h["name"]: h["address"].split("/")[0] for h in status["hosts"]}
    bad = []
    for host in hosts:
        out = subprocess.run(["tortie", "lab", "exec", host, "--", "ip", "-j", "-4", "route", "show", "proto",
                              "bird"], check=True, capture_output=True, text=True).stdout
        routes = [(ipaddress.ip_network(r["dst"]), r.get("gateway")) for r in json.loads(out or "[]")]
        for wl in status["workloads"]:
            if wl["host"] == host:
                continue
            ip = ipaddress.ip_address(wl["ips"][0])
            best = max((r for r in routes if ip in r[0]), key=lambda r: r[0].prefixlen, default=None)
            if best is None or best[1] != hosts[wl["host"]]:
                bad.append(f"{host} does not route {wl['name']} ({ip}) via {wl['host']}: {best}")
    return bad, len(hosts), len(status["workloads"])
deadline = time.monotonic() + 20
while True:
    bad, hosts, workloads = problems()
    if not bad or time.monotonic() > deadline:
        break
    time.sleep(0.5)
for line in bad:
    print("  " + line)
if bad:
    raise SystemExit(1)
print(f"\nroutes OK: each of {hosts} hosts routes every workload of the other hosts through that host, "
      "learned over BGP")
PY

RUN=/run/tortie/lab/$LAB/run
[ -n "${TORTIE_LAB_ROOT:-}" ] && RUN=$TORTIE_LAB_ROOT/$LAB/run
step tortie node status --hostname h1 --run-dir "$RUN/h1"
step tortie lab exec h1 -- ip route show proto bird
step tortie lab exec h1 -- ip -6 route show proto bird
step tortie lab exec tor -- gobgp -p 50051 global rib
step tortie lab exec tor -- gobgp -p 50051 global rib -a ipv6

# check_matrix EXPECTED: compare `tortie lab matrix -o json` with the expected allowed pairs, retrying
# for a while (the agents program policy asynchronously after `tortie apply`).
check_matrix() {
  python - "$1" <<'PY'
import json, subprocess, sys, time
expected = {tuple(p.split(">")) for p in sys.argv[1].split()} if sys.argv[1] != "all" else None
deadline = time.monotonic() + 20
while True:
    data = json.loads(subprocess.run(["tortie", "lab", "matrix", "-o", "json"], check=True,
                                     capture_output=True, text=True).stdout)
    names = data["workloads"]
    want = {(s, d) for s in names for d in names if s != d} if expected is None else expected
    got = {(s, d) for s in names for d in names if s != d and data["allowed"][s][d]}
    if got == want or time.monotonic() > deadline:
        break
    time.sleep(0.5)
if got != want:
    for s, d in sorted(want - got):
        print(f"  expected allowed, got denied: {s} -> {d}")
    for s, d in sorted(got - want):
        print(f"  expected denied, got allowed: {s} -> {d}")
    raise SystemExit(1)
print(f"matrix OK: {len(got)} of {len(names) * (len(names) - 1)} pairs allowed, as expected")
PY
}

step tortie lab matrix
check_matrix all || fail "connectivity before policy differs from expected (everything allowed)"

step tortie apply -f examples/tiers.yaml -f examples/policies.yaml
step tortie get networkpolicies -n shop
check_matrix "frontend-1>web-1 frontend-1>web-2 frontend-2>web-1 frontend-2>web-2" \
  || { tortie lab matrix || true; fail "connectivity after policy differs from expected"; }
step tortie lab matrix

step tortie apply -f examples/kubernetes-shop.yaml
step tortie get networkpolicies -n shop -o wide
check_matrix "frontend-1>web-1 frontend-1>web-2 frontend-2>web-1 frontend-2>web-2 web-1>db-1 web-2>db-1" \
  || { tortie lab matrix || true; fail "connectivity after the Kubernetes NetworkPolicy differs from expected"; }
step tortie policy trace --from shop/web-1 --to shop/db-1 --port 80
printf '\n\033[1m$ tortie policy trace --from shop/frontend-1 --to shop/db-1 --port 80\033[0m\n'
rc=0; out=$(tortie policy trace --from shop/frontend-1 --to shop/db-1 --port 80) || rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 3 ] && grep -q "isolated by Kubernetes NetworkPolicy shop/web-to-db" <<<"$out" \
  || fail "the trace of a denied packet does not name the Kubernetes NetworkPolicy"
# Every workload also has an IPv6 address (printed by `workload add`); the same policy holds there.
step tortie lab probe frontend-2 web-1 --ip-family 6 || fail "frontend-2 -> web-1 over IPv6 should be allowed"
if step tortie lab probe intruder web-1 --ip-family 6 --timeout 1; then
  fail "intruder -> web-1 over IPv6 should be denied"
fi

trap - EXIT
step tortie lab down
elapsed=$(python -c "import time; print(round(time.time() - $started, 1))")
printf '\ndemo: OK (%s s)\n' "$elapsed"
