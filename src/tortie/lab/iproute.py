"""How the lab changes the kernel: iproute2 commands (in batches, per namespace) and sysctl writes.

    run(argv)                    a command; LabError naming it and its stderr when it fails
    ip_batch(lines, netns)       one `ip [-n NETNS] -batch -`; `ip -batch` lines cannot carry -n/-6
                                 options, so batches are per namespace and IPv6 defaults are `::/0`
    ip_batch_lenient(lines)      `ip -force -batch -`: goes on past failing lines (teardown)
    write_sysctls(netns, values) /proc/sys/net inside NETNS; net/ipv6 keys are skipped when IPv6 is off

Sysctls are written through `tortie.kernel.sysctl.Sysctls(netns)`: a short-lived thread inside the namespace
(`/proc/sys/net` follows the namespace of the thread that opens it), much cheaper than
`ip netns exec ... sysctl`, and closed at once so that no thread pins the namespace after
`ip netns del`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence

from tortie.kernel.sysctl import Sysctls
from tortie.lab.errors import LabError


def run(
    argv: Sequence[str], *, stdin: str | None = None, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        detail = f"\n{stdin}" if stdin else ""
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}{detail}\n{proc.stderr.strip()}")
    return proc


def ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    script = "".join(f"{line}\n" for line in lines)
    if script:
        run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], stdin=script)


def ip_batch_lenient(lines: Iterable[str]) -> None:
    """Run each line; `ip -force -batch` continues past lines that fail (e.g. already deleted)."""
    run(["ip", "-force", "-batch", "-"], stdin="".join(f"{line}\n" for line in lines), check=False)


def write_sysctls(netns: str, values: Mapping[str, str]) -> None:
    driver = Sysctls(netns)  # short-lived: its thread must not pin the namespace
    try:
        for key, value in values.items():
            if driver.read_sysctl(key) is not None or not key.startswith("net/ipv6/"):
                driver.write_sysctl(key, value)
    finally:
        driver.close()


def list_namespaces() -> list[str]:
    """Every named network namespace on the machine (`ip netns list`)."""
    proc = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
