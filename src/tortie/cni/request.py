"""The runtime's side of a CNI call: environment variables, parsed and checked per verb.

Input: `os.environ`-like mapping (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
CNI_PATH). Output: a frozen `CniRequest`. Which variables a verb needs (CNI spec 1.1, "Parameters"):

    ADD, CHECK   CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME (CNI_PATH too, but only delegation uses it)
    DEL          CNI_CONTAINERID, CNI_IFNAME (CNI_NETNS may be empty: clean up what can be found)
    VERSION, STATUS, GC   none

A missing or malformed variable raises `CniError` code 4 (invalid environment variables) before any
side effect. CNI_ARGS is `K=V;K=V` (e.g. IgnoreUnknown=1;K8S_POD_NAME=web-0); pairs without `=` are
an error, as in libcni's parser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tortie.cni.errors import INVALID_ENVIRONMENT, CniError

VERBS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
_CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_BAD_IFNAME_CHARS = re.compile(r"[/:\s]")


@dataclass(frozen=True)
class CniRequest:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()

    @property
    def k8s_pod(self) -> tuple[str, str] | None:
        """(namespace, pod name) when the runtime passed K8S_POD_NAMESPACE and K8S_POD_NAME."""
        ns, name = self.args.get("K8S_POD_NAMESPACE", ""), self.args.get("K8S_POD_NAME", "")
        return (ns, name) if ns and name else None


def parse_cni_args(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"{item!r} is not KEY=VALUE")
        out[key] = value
    return out


def check_ifname(name: str) -> str:
    if not name or name in (".", "..") or len(name) > 15 or _BAD_IFNAME_CHARS.search(name):
        raise CniError(
            INVALID_ENVIRONMENT,
            "invalid CNI_IFNAME",
            f"{name!r}: interface names are 1-15 characters without '/', ':' or whitespace",
        )
    return name


def parse_request(env: Mapping[str, str]) -> CniRequest:
    """Parse and check the CNI environment (see the module docstring)."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "CNI_COMMAND is not set", f"expected one of {', '.join(VERBS)}")
    if command not in VERBS:
        raise CniError(
            INVALID_ENVIRONMENT, "unknown CNI_COMMAND", f"{command!r}; expected one of {', '.join(VERBS)}"
        )
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    if command in ("VERSION", "STATUS", "GC"):
        return CniRequest(command=command, path=path)
    missing = [v for v in ("CNI_CONTAINERID", "CNI_IFNAME") if not env.get(v)]
    if command in ("ADD", "CHECK") and not env.get("CNI_NETNS"):
        missing.append("CNI_NETNS")
    if missing:
        raise CniError(INVALID_ENVIRONMENT, "required environment variables missing", ", ".join(missing))
    container_id = env["CNI_CONTAINERID"]
    if not _CONTAINER_ID_RE.match(container_id):
        raise CniError(
            INVALID_ENVIRONMENT,
            "invalid CNI_CONTAINERID",
            f"{container_id!r}: must start with a letter or digit, then letters, digits, '_', '.' or '-'",
        )
    return CniRequest(
        command=command,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=check_ifname(env["CNI_IFNAME"]),
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=path,
    )
