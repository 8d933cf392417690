"""The MTU file: the workload MTU the agent publishes for the CNI plugin and the DHCP service.

Format: one decimal number and a newline (Calico's /var/lib/calico/mtu the same way). The agent
(`tortie.dataplane.managers.host_mtu`) writes it with `mtu_file_text`; every reader uses
`read_mtu_file`, which returns None when the file is missing, unreadable, not a number or outside
68-65535 (each reader then falls back to its own default), so one format is defined once.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MTU_FILE = "/var/lib/tortie/mtu"
MIN_MTU = 68
MAX_MTU = 65535
IPV6_MIN_MTU = 1280  # IPv6's minimum link MTU (RFC 8200 section 5)


def mtu_file_text(mtu: int) -> str:
    return f"{mtu}\n"


def read_mtu_file(path: str) -> int | None:
    """The workload MTU in `path`, or None when there is no usable number there."""
    try:
        value = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    return value if MIN_MTU <= value <= MAX_MTU else None
