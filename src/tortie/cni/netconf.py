"""Network configuration (the JSON a runtime streams on stdin) for `tortie` and `tortie-ipam`.

Input: the raw stdin bytes. Output: a frozen `NetConf`. Every field is documented in
docs/reference/cni.md; unknown fields are ignored (runtimes and chained plugins add their own).
Errors, all raised before any side effect:

    stdin is not a JSON object            -> CniError 6 (decoding failure)
    cniVersion missing or not supported   -> CniError 1 (incompatible CNI version)
    a field has the wrong type or value   -> CniError 7 (invalid network configuration)

Defaults that involve the host (node name, MTU) are resolved later by `resolve_nodename` and
`resolve_mtu`, so parsing stays pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tortie.cni.errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_NETWORK_CONFIG, CniError
from tortie.cni.launcher import DEFAULT_SOCKET as DEFAULT_SERVICE_SOCKET
from tortie.cni.launcher import DEFAULT_TIMEOUT as DEFAULT_SERVICE_TIMEOUT
from tortie.common.ipfamily import V4, V6, Family
from tortie.common.mtu_file import DEFAULT_MTU_FILE, read_mtu_file

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
DEFAULT_INTERFACE_PREFIX = "tort"  # the agent's default interface_prefix: both must agree
DEFAULT_ROUTE_PROTOCOL = 77  # the agent's default device_route_protocol: it adopts our host routes
DEFAULT_MTU = 1500
DEFAULT_NODENAME_FILE = "/var/lib/tortie/nodename"
DEFAULT_IPAM_LOCK_FILE = "/run/tortie/ipam.lock"
DEFAULT_NAMESPACE = "default"
DEFAULT_POLICY_SETUP_TIMEOUT = 5.0  # seconds ADD waits for the agent (0: do not wait, no guarantee)
# the agent's default endpoint_status_path_prefix + /endpoint-status
DEFAULT_ENDPOINT_STATUS_DIR = "/var/run/tortie/endpoint-status"
IPAM_TYPE = "tortie-ipam"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,11}$")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def check_version(version: object) -> str:
    """Return `version` if this plugin speaks it, else raise CniError 1."""
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            f"cniVersion {version!r} is not supported; supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    return version


@dataclass(frozen=True)
class IpamConf:
    type: str = IPAM_TYPE
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def pools(self) -> tuple[str, ...] | None:
        """Every pool named, both families (for messages)."""
        both = self.ipv4_pools + self.ipv6_pools
        return both or None

    def pools_by_family(self) -> dict[Family, tuple[str, ...]]:
        """The pools named per family (`ipv4_pools`, `ipv6_pools`), families without names left out."""
        named = {V4: self.ipv4_pools, V6: self.ipv6_pools}
        return {fam: items for fam, items in named.items() if items}

    def wanted(self) -> list[Family]:
        """The families to assign an address of (`assign_ipv4`, `assign_ipv6`)."""
        return [fam for fam, on in ((V4, self.assign_ipv4), (V6, self.assign_ipv6)) if on]


@dataclass(frozen=True)
class PortMapping:
    """One entry of runtimeConfig.portMappings (the CNI `portMappings` capability)."""

    container_port: int
    protocol: str
    host_port: int | None = None
    host_ip: str | None = None


@dataclass(frozen=True)
class Attachment:
    container_id: str
    ifname: str | None


@dataclass(frozen=True)
class NetConf:
    cni_version: str
    name: str
    type: str
    ipam: IpamConf = field(default_factory=IpamConf)
    mtu: int = 0
    nodename: str = ""
    nodename_file: str = DEFAULT_NODENAME_FILE
    mtu_file: str = DEFAULT_MTU_FILE
    datastore: str | None = None
    log_level: str = "warning"
    log_file_path: str = ""
    interface_prefix: str = DEFAULT_INTERFACE_PREFIX
    route_protocol: int = DEFAULT_ROUTE_PROTOCOL
    ipam_lock_file: str = DEFAULT_IPAM_LOCK_FILE
    namespace: str = DEFAULT_NAMESPACE
    labels: Mapping[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] | None = None
    ports: tuple[PortMapping, ...] = ()
    service_socket: str = DEFAULT_SERVICE_SOCKET
    service_timeout: float = DEFAULT_SERVICE_TIMEOUT
    policy_setup_timeout: float = DEFAULT_POLICY_SETUP_TIMEOUT
    endpoint_status_dir: str = DEFAULT_ENDPOINT_STATUS_DIR
    prev_result: Mapping[str, Any] | None = None
    valid_attachments: tuple[Attachment, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def version_at_least(self, version: str) -> bool:
        return version_tuple(self.cni_version) >= version_tuple(version)


def _bad(field_name: str, problem: str) -> CniError:
    return CniError(INVALID_NETWORK_CONFIG, "invalid network configuration", f"{field_name}: {problem}")


def _get(
    obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str = ""
) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    if kind is int and isinstance(value, bool):
        raise _bad(where + key, "must be an integer")
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _bad(where + key, f"must be of type {expected}, got {type(value).__name__}")
    return value


def _flag(obj: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """A boolean given as JSON true/false or, as Calico's configurations spell it, "true"/"false"."""
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise _bad(where + key, f'must be true or false (or "true"/"false"), got {value!r}')


def _seconds(obj: Mapping[str, Any], key: str, default: float, *, positive: bool = False) -> float:
    value = _get(obj, key, (int, float), default)
    if isinstance(value, bool) or value < 0 or (positive and value == 0) or value > 86400:
        raise _bad(key, f"{value!r}: seconds, {'more than' if positive else 'at least'} 0 and at most 86400")
    return float(value)


def _str_list(obj: Mapping[str, Any], key: str, where: str = "") -> tuple[str, ...]:
    value = _get(obj, key, list, [], where)
    if not all(isinstance(v, str) and v for v in value):
        raise _bad(where + key, "must be a list of non-empty strings")
    return tuple(value)


def _str_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad(where, "must be an object of string values")
    return dict(value)


def load_json(data: bytes) -> dict[str, Any]:
    """Decode stdin: a JSON object within `MAX_CNI_INPUT_BYTES` and `MAX_DEPTH` levels, else CniError 6.
    The limits keep a runaway or hostile input (a 10 MB `[[[[...`) from exhausting the plugin or
    the node's CNI service: no real network configuration is near either."""
    from tortie.model.input_limits import MAX_CNI_INPUT_BYTES, MAX_DEPTH, InputTooDeep, InputTooLarge
    from tortie.model.input_limits import load_json as limited_json

    try:
        obj = limited_json(data or b"", "stdin", max_depth=MAX_DEPTH, max_bytes=MAX_CNI_INPUT_BYTES)
    except (InputTooLarge, InputTooDeep) as e:
        raise CniError(DECODING_FAILURE, "the network configuration on stdin is too large", str(e)) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CniError(DECODING_FAILURE, "cannot decode the network configuration on stdin", str(e)) from None
    if not isinstance(obj, dict):
        raise CniError(
            DECODING_FAILURE,
            "cannot decode the network configuration on stdin",
            f"expected a JSON object, got {type(obj).__name__}",
        )
    return obj


def _parse_ipam(raw: object) -> IpamConf:
    if raw is None:
        return IpamConf()
    if not isinstance(raw, dict):
        raise _bad("ipam", "must be an object")
    where = "ipam."
    ipam_type = _get(raw, "type", str, IPAM_TYPE, where) or IPAM_TYPE
    conf = IpamConf(
        type=ipam_type,
        assign_ipv4=_flag(raw, "assign_ipv4", True, where),
        assign_ipv6=_flag(raw, "assign_ipv6", False, where),
        ipv4_pools=_str_list(raw, "ipv4_pools", where),
        ipv6_pools=_str_list(raw, "ipv6_pools", where),
        raw=raw,
    )
    if ipam_type == IPAM_TYPE and not (conf.assign_ipv4 or conf.assign_ipv6):
        raise _bad("ipam", "assign_ipv4 and assign_ipv6 are both false: nothing to assign")
    return conf


def _parse_ports(raw: Mapping[str, Any]) -> tuple[PortMapping, ...]:
    rc = raw.get("runtimeConfig")
    if rc is None:
        return ()
    if not isinstance(rc, dict):
        raise _bad("runtimeConfig", "must be an object")
    mappings = rc.get("portMappings") or []
    if not isinstance(mappings, list):
        raise _bad("runtimeConfig.portMappings", "must be a list")
    out = []
    for i, m in enumerate(mappings):
        where = f"runtimeConfig.portMappings[{i}]."
        if not isinstance(m, dict):
            raise _bad(where[:-1], "must be an object")
        port = _get(m, "containerPort", int, None, where)
        if port is None or not 0 < port < 65536:
            raise _bad(where + "containerPort", "must be a port number 1-65535")
        proto = str(_get(m, "protocol", str, "tcp", where)).upper()
        if proto not in ("TCP", "UDP", "SCTP"):
            raise _bad(where + "protocol", "must be tcp, udp or sctp")
        host_port = _get(m, "hostPort", int, None, where)
        out.append(PortMapping(port, proto, host_port or None, _get(m, "hostIP", str, None, where) or None))
    return tuple(out)


def _parse_attachments(raw: Mapping[str, Any]) -> tuple[Attachment, ...] | None:
    # libcni sends both spellings (an early 1.1 draft used cni.dev/attachments).
    key = "cni.dev/valid-attachments" if "cni.dev/valid-attachments" in raw else "cni.dev/attachments"
    items = raw.get(key)
    if items is None:
        return None
    if not isinstance(items, list):
        raise _bad(key, "must be a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str):
            raise _bad(f"{key}[{i}]", "must be an object with a containerID string")
        ifname = item.get("ifname")
        out.append(Attachment(item["containerID"], ifname if isinstance(ifname, str) else None))
    return tuple(out)


def _config_labels(raw: Mapping[str, Any]) -> dict[str, str]:
    labels = _str_map(raw.get("labels"), "labels")
    # CNI convention: "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}}
    args = raw.get("args")
    cni_args = args.get("cni") if isinstance(args, dict) else None
    extra = cni_args.get("labels") if isinstance(cni_args, dict) else None
    if extra is not None:
        if not isinstance(extra, list):
            raise _bad("args.cni.labels", "must be a list of {key, value} objects")
        for i, item in enumerate(extra):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("key"), str)
                and isinstance(item.get("value"), str)
            ):
                raise _bad(f"args.cni.labels[{i}]", "must be an object with string key and value")
            labels[item["key"]] = item["value"]
    return labels


def parse_netconf(raw: Mapping[str, Any], *, need_name: bool = True) -> NetConf:
    """Parse a decoded network configuration (see the module docstring for the errors)."""
    version = check_version(raw.get("cniVersion"))
    name = _get(raw, "name", str, "")
    if need_name and not name:
        raise _bad("name", "the network name is required")
    if "/" in name or name in (".", ".."):
        raise _bad("name", f"{name!r} may not contain '/'")
    prefix = _get(raw, "interface_prefix", str, DEFAULT_INTERFACE_PREFIX)
    if not _PREFIX_RE.match(prefix):
        raise _bad("interface_prefix", f"{prefix!r}: 1-11 of letters, digits, '_', '.', '-'")
    mtu = _get(raw, "mtu", int, 0)
    if mtu and not 68 <= mtu <= 65535:
        raise _bad("mtu", f"{mtu} is outside 68-65535")
    proto = _get(raw, "route_protocol", int, DEFAULT_ROUTE_PROTOCOL)
    if not 1 <= proto <= 255:
        raise _bad("route_protocol", f"{proto} is outside 1-255")
    level = str(_get(raw, "log_level", str, "warning")).lower()
    if level not in _LOG_LEVELS:
        raise _bad("log_level", f"{level!r}: use one of {', '.join(_LOG_LEVELS)}")
    prev = raw.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _bad("prevResult", "must be an object")
    profiles = raw.get("profiles")
    if profiles is not None:
        profiles = _str_list(raw, "profiles")
    service_timeout = _seconds(raw, "service_timeout_seconds", DEFAULT_SERVICE_TIMEOUT, positive=True)
    policy_timeout = _seconds(raw, "policy_setup_timeout_seconds", DEFAULT_POLICY_SETUP_TIMEOUT)
    return NetConf(
        cni_version=version,
        name=name,
        type=_get(raw, "type", str, ""),
        ipam=_parse_ipam(raw.get("ipam")),
        mtu=mtu,
        nodename=_get(raw, "nodename", str, ""),
        nodename_file=_get(raw, "nodename_file", str, DEFAULT_NODENAME_FILE),
        mtu_file=_get(raw, "mtu_file", str, DEFAULT_MTU_FILE),
        datastore=_get(raw, "datastore", str, None) or None,
        log_level=level,
        log_file_path=_get(raw, "log_file_path", str, ""),
        interface_prefix=prefix,
        route_protocol=proto,
        ipam_lock_file=_get(raw, "ipam_lock_file", str, DEFAULT_IPAM_LOCK_FILE),
        namespace=_get(raw, "namespace", str, DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE,
        labels=_config_labels(raw),
        profiles=profiles,
        ports=_parse_ports(raw),
        service_socket=_get(raw, "service_socket", str, DEFAULT_SERVICE_SOCKET),
        service_timeout=service_timeout,
        policy_setup_timeout=policy_timeout,
        endpoint_status_dir=_get(raw, "endpoint_status_dir", str, DEFAULT_ENDPOINT_STATUS_DIR)
        or DEFAULT_ENDPOINT_STATUS_DIR,
        prev_result=prev,
        valid_attachments=_parse_attachments(raw),
        raw=raw,
    )


def resolve_nodename(conf: NetConf) -> str:
    """nodename, else the first line of nodename_file when it exists, else the host name."""
    if conf.nodename:
        return conf.nodename
    if conf.nodename_file:
        try:
            text = Path(conf.nodename_file).read_text().strip()
        except OSError:
            text = ""
        if text:
            return text.splitlines()[0].strip()
    return os.uname().nodename


def resolve_mtu(conf: NetConf) -> int:
    """mtu, else the number in mtu_file (written by the node when it knows the fabric MTU), else 1500."""
    if conf.mtu:
        return conf.mtu
    return read_mtu_file(conf.mtu_file) or DEFAULT_MTU


def attachment_valid(valid: Sequence[Attachment], container_id: str, ifname: str | None) -> bool:
    return any(
        a.container_id == container_id and (a.ifname is None or ifname is None or a.ifname == ifname)
        for a in valid
    )
