"""Top-of-rack routers for the lab: gobgpd or FRR in their own namespace on the fabric.

    <lab>-tor   eth0 = <subnet>.1 (and <subnet6>::1)   AS `asn` (eBGP to the hosts' AS)
       gobgp:  gobgpd -f <dir>/gobgpd.toml, API on the namespace's own 127.0.0.1:50051
       frr:    zebra + bgpd as user frr, files in <dir> (chowned to frr), `vtysh --vty_socket <dir>`

Both accept sessions from any address of each fabric subnet (gobgpd dynamic neighbours / FRR
`bgp listen range`, one per family) with the hosts' AS, so hosts added later peer without
reconfiguring the router; a session carries the unicast family of its addresses (the hosts' BIRD
opens one session per family, as Calico's does). The router id is the IPv4 address, or on an
IPv6-only fabric the low 32 bits of the IPv6 one (a BGP identifier is 32 bits whatever the family);
the router never connects itself (hosts do: tortie nodes are never passive towards external peers).
RFC 8212 filters are opened explicitly (FRR `no bgp ebgp-requires-policy`). Both help a host that
restarts gracefully (RFC 4724 helper: gobgpd `graceful-restart` helper-only, FRR by default), so a
planned node restart leaves the ToR's routes to it in place. gobgpd keeps routes in its
RIB only (a good observer); FRR also programs its kernel.

Inputs: a `Lab` with an appliance record for the router, the hosts' AS. Output: the router's
processes, recorded in lab.json with role `router/<name>` (and `router/<name>/zebra` for FRR).
`rib_prefixes()` reads what the router learned in every family (for checks and `lab status`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import time
from pathlib import Path

from tortie.common.ipfamily import FAMILIES, family_of
from tortie.lab.errors import LabError
from tortie.lab.lab import Lab
from tortie.lab.state import ApplianceRecord

KINDS = ("gobgp", "frr")
GOBGP_API_PORT = 50051  # inside the router's own namespace nothing else can hold it


def available(kind: str) -> bool:
    if kind == "gobgp":
        return shutil.which("gobgpd") is not None and shutil.which("gobgp") is not None
    if kind == "frr":
        return os.path.exists("/usr/lib/frr/bgpd") and os.path.exists("/usr/lib/frr/zebra")
    return False


def router_id(router: ApplianceRecord) -> str:
    """The router's BGP identifier: its IPv4 address, else the low 32 bits of its first address."""
    ips = [ipaddress.ip_interface(a).ip for a in router.addresses]
    v4 = [ip for ip in ips if ip.max_prefixlen == 32]
    return str(v4[0] if v4 else ipaddress.IPv4Address(int(ips[0]) & 0xFFFFFFFF))


def _families(subnets: list[str]) -> list[str]:
    """The BGP unicast families of `subnets` ("ipv4", "ipv6"), IPv4 first."""
    present = {family_of(s) for s in subnets}
    return [fam.key for fam in FAMILIES if fam in present]


def gobgp_config(router: ApplianceRecord, subnets: list[str], peer_as: int) -> str:
    ips = ", ".join(f'"{ipaddress.ip_interface(a).ip}"' for a in router.addresses)
    lines = [
        "[global.config]",
        f"  as = {router.asn}",
        f'  router-id = "{router_id(router)}"',
        f"  local-address-list = [{ips}]",
        "",
        "[[peer-groups]]",
        "  [peer-groups.config]",
        '    peer-group-name = "hosts"',
        f"    peer-as = {peer_as}",
        "  [peer-groups.graceful-restart.config]",  # helper: keep a restarting host's routes
        "    enabled = true",
        "    helper-only = true",
    ]
    for key in _families(subnets):
        lines += [
            "  [[peer-groups.afi-safis]]",
            "    [peer-groups.afi-safis.config]",
            f'      afi-safi-name = "{key}-unicast"',
            "    [peer-groups.afi-safis.mp-graceful-restart.config]",
            "      enabled = true",
        ]
    for subnet in subnets:
        lines += [
            "",
            "[[dynamic-neighbors]]",
            "  [dynamic-neighbors.config]",
            f'    prefix = "{subnet}"',
            '    peer-group = "hosts"',
        ]
    return "\n".join(lines) + "\n"


def frr_config(router: ApplianceRecord, subnets: list[str], peer_as: int) -> str:
    lines = [
        f"hostname {router.name}",
        "log stdout informational",
        f"router bgp {router.asn}",
        f" bgp router-id {router_id(router)}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " neighbor hosts peer-group",
        f" neighbor hosts remote-as {peer_as}",
        " neighbor hosts timers connect 1",
        *(f" bgp listen range {subnet} peer-group hosts" for subnet in subnets),
    ]
    for key in _families(subnets):
        lines += [f" address-family {key} unicast", "  neighbor hosts activate", " exit-address-family"]
    return "\n".join([*lines, ""])


def _config_dir(lab: Lab, router: ApplianceRecord) -> Path:
    directory = lab.records.record_tree(lab.workdir / "routers") / router.name
    directory.mkdir(exist_ok=True)
    return directory


def start_router(lab: Lab, router: ApplianceRecord, peer_as: int) -> None:
    """Write the router's configuration and start its daemon(s) in its namespace."""
    if router.kind not in KINDS:
        raise LabError(f"unknown router kind {router.kind!r} (expected one of {', '.join(KINDS)})")
    if not available(router.kind):
        package = "gobgpd" if router.kind == "gobgp" else "frr"
        raise LabError(f"{router.kind} is not installed (apt-get install {package})")
    directory = _config_dir(lab, router)
    subnets = list(lab.state.subnets)
    if router.kind == "gobgp":
        conf = directory / "gobgpd.toml"
        conf.write_text(gobgp_config(router, subnets, peer_as))
        lab.processes.start(
            router.name,
            [
                "gobgpd",
                "-f",
                str(conf),
                "-p",
                "--pprof-disable",
                f"--api-hosts=127.0.0.1:{GOBGP_API_PORT}",
                "--log-level=warn",
            ],
            role=f"router/{router.name}",
        )
        _wait(
            lambda: lab.exec(router.name, _gobgp_cli("global"), check=False).returncode == 0,
            f"gobgpd API of {router.name}",
        )
        return
    # FRR drops privileges to user frr: its directory must belong to frr and be reachable.
    os.chmod(directory, 0o755)
    (directory / "zebra.conf").write_text(f"hostname {router.name}\n")
    (directory / "bgpd.conf").write_text(frr_config(router, subnets, peer_as))
    frr = pwd.getpwnam("frr")
    for entry in [directory, *directory.iterdir()]:
        os.chown(entry, frr.pw_uid, frr.pw_gid)
    common = ["-z", str(directory / "zserv.api"), "--vty_socket", str(directory), "-P", "0"]
    lab.processes.start(
        router.name,
        [
            "/usr/lib/frr/zebra",
            "-f",
            str(directory / "zebra.conf"),
            "-i",
            str(directory / "zebra.pid"),
            *common,
        ],
        role=f"router/{router.name}/zebra",
    )
    _wait(lambda: (directory / "zserv.api").exists(), f"zebra of {router.name}")
    lab.processes.start(
        router.name,
        ["/usr/lib/frr/bgpd", "-f", str(directory / "bgpd.conf"), "-i", str(directory / "bgpd.pid"), *common],
        role=f"router/{router.name}",
    )
    _wait(
        lambda: (
            lab.exec(
                router.name, ["vtysh", "--vty_socket", str(directory), "-c", "show bgp summary"], check=False
            ).returncode
            == 0
        ),
        f"bgpd of {router.name}",
    )


def _gobgp_cli(*args: str) -> list[str]:
    return ["gobgp", "-u", "127.0.0.1", "-p", str(GOBGP_API_PORT), *args]


def _wait(predicate: object, what: str, timeout: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def rib_prefixes(lab: Lab, router: ApplianceRecord) -> set[str]:
    """The prefixes the router has in its BGP table, every family of the fabric."""
    out: set[str] = set()
    for key in _families(lab.state.subnets):
        out |= _rib(lab, router, key)
    return out


def _rib(lab: Lab, router: ApplianceRecord, key: str) -> set[str]:
    if router.kind == "gobgp":
        argv = _gobgp_cli("global", "rib", "-a", key, "-j")
    else:
        directory = lab.workdir / "routers" / router.name
        argv = ["vtysh", "--vty_socket", str(directory), "-c", f"show bgp {key} unicast json"]
    try:
        data = json.loads(lab.exec(router.name, argv, check=False).stdout or "{}")
    except ValueError:
        return set()
    if isinstance(data, dict) and router.kind != "gobgp":
        data = data.get("routes")
    return set(data) if isinstance(data, dict) else set()


def neighbors(lab: Lab, router: ApplianceRecord) -> dict[str, str]:
    """Neighbour address -> BGP state as the router sees it."""
    out: dict[str, str] = {}
    if router.kind == "gobgp":
        text = lab.exec(router.name, _gobgp_cli("neighbor", "-j"), check=False).stdout
        try:
            for item in json.loads(text or "[]"):
                state = item.get("state", {})
                out[str(state.get("neighbor_address"))] = str(state.get("session_state", "unknown"))
        except (ValueError, AttributeError):
            pass
        return out
    directory = lab.workdir / "routers" / router.name
    text = lab.exec(
        router.name, ["vtysh", "--vty_socket", str(directory), "-c", "show bgp summary json"], check=False
    ).stdout
    try:
        summary = json.loads(text or "{}")
        for key in _families(lab.state.subnets):
            for address, info in summary.get(f"{key}Unicast", {}).get("peers", {}).items():
                out[str(address)] = str(info.get("state", "unknown"))
    except (ValueError, AttributeError):
        pass
    return out
