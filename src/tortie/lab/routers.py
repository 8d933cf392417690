"""Top-of-rack routers for the lab: gobgpd or FRR in their own namespace on the fabric.

    <lab>-tor   eth0 = <subnet>.1   AS `asn` (eBGP to the hosts' AS)
       gobgp:  gobgpd -f <dir>/gobgpd.toml, API on the namespace's own 127.0.0.1:50051
       frr:    zebra + bgpd as user frr, files in <dir> (chowned to frr), `vtysh --vty_socket <dir>`

Both accept sessions from any address of the fabric subnet (gobgpd dynamic neighbours / FRR
`bgp listen range`) with the hosts' AS, so hosts added later peer without reconfiguring the router;
the router never connects itself (hosts do: tortie nodes are never passive towards external peers).
RFC 8212 filters are opened explicitly (FRR `no bgp ebgp-requires-policy`). gobgpd keeps routes in its
RIB only (a good observer); FRR also programs its kernel.

Inputs: a `Lab` with an appliance record for the router, the hosts' AS. Output: the router's
processes, recorded in lab.json with role `router/<name>` (and `router/<name>/zebra` for FRR).
`rib_prefixes()` reads what the router learned (for checks and `lab status`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import time
from pathlib import Path

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


def gobgp_config(router: ApplianceRecord, subnet: str, peer_as: int) -> str:
    ip = str(ipaddress.ip_interface(router.address).ip)
    return f"""[global.config]
  as = {router.asn}
  router-id = "{ip}"
  local-address-list = ["{ip}"]

[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "hosts"
    peer-as = {peer_as}
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = "{subnet}"
    peer-group = "hosts"
"""


def frr_config(router: ApplianceRecord, subnet: str, peer_as: int) -> str:
    ip = str(ipaddress.ip_interface(router.address).ip)
    return "\n".join(
        [
            f"hostname {router.name}",
            "log stdout informational",
            f"router bgp {router.asn}",
            f" bgp router-id {ip}",
            " no bgp ebgp-requires-policy",
            " no bgp default ipv4-unicast",
            " neighbor hosts peer-group",
            f" neighbor hosts remote-as {peer_as}",
            " neighbor hosts timers connect 1",
            f" bgp listen range {subnet} peer-group hosts",
            " address-family ipv4 unicast",
            "  neighbor hosts activate",
            " exit-address-family",
            "",
        ]
    )


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
    subnet = lab.state.subnet
    if router.kind == "gobgp":
        conf = directory / "gobgpd.toml"
        conf.write_text(gobgp_config(router, subnet, peer_as))
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
    (directory / "bgpd.conf").write_text(frr_config(router, subnet, peer_as))
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
    """IPv4 prefixes the router has in its BGP table."""
    if router.kind == "gobgp":
        out = lab.exec(router.name, _gobgp_cli("global", "rib", "-j"), check=False).stdout
        try:
            data = json.loads(out or "{}")
        except ValueError:
            return set()
        return set(data) if isinstance(data, dict) else set()
    directory = lab.workdir / "routers" / router.name
    out = lab.exec(
        router.name,
        ["vtysh", "--vty_socket", str(directory), "-c", "show bgp ipv4 unicast json"],
        check=False,
    ).stdout
    try:
        data = json.loads(out or "{}")
    except ValueError:
        return set()
    routes = data.get("routes") if isinstance(data, dict) else None
    return set(routes) if isinstance(routes, dict) else set()


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
        peers = json.loads(text or "{}").get("ipv4Unicast", {}).get("peers", {})
        for address, info in peers.items():
            out[str(address)] = str(info.get("state", "unknown"))
    except (ValueError, AttributeError):
        pass
    return out
