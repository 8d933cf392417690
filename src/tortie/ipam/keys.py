"""Datastore keys of IPAM objects, in Calico's etcd v3 layout (reference §1.16), and their parsing.

    /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26          block (IPv6: ipv6/block/fd00::-122)
    /calico/ipam/v2/host/<host>/ipv4/block/10.0.0.0-26         block affinity of <host>
    /calico/ipam/v2/handle/<handle-id>                         handle
    /calico/ipam/v2/config                                     IPAM configuration (singleton)

An `IPAMConfiguration` resource applied with `tortie apply` lands at `CONFIG_RESOURCE_KEY` in v3 form;
IPAM honours whichever of the two configuration keys was written last (see `config.newest_config`).
`block_head_at` / `affinity_at` decode the object stored at a key (`tortie.model.ipam_records`).

Resource keys (IPPool, Node, WorkloadEndpoint, IPReservation) come from `tortie.model.kinds`.
Host names and handle ids become key segments, so they may not be empty or contain '/'.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from tortie.common.errors import InvalidRecord
from tortie.common.ipfamily import FAMILIES, Family, IPNetwork, family_of
from tortie.ipam.errors import InvalidIpamRequest
from tortie.model.ipam_block import BlockHead
from tortie.model.ipam_records import Affinity, decode_affinity, decode_block_head
from tortie.model.kinds import kind_info

IPAM_ROOT = "/calico/ipam/v2/"
BLOCK_ROOT = IPAM_ROOT + "assignment/"
HOST_ROOT = IPAM_ROOT + "host/"
HANDLE_ROOT = IPAM_ROOT + "handle/"
CONFIG_KEY = IPAM_ROOT + "config"
# Where the generic resource layer stores an applied `IPAMConfiguration default` (v3 wire form).
CONFIG_RESOURCE_KEY = kind_info("IPAMConfiguration").key("default")

POOL_PREFIX = kind_info("IPPool").list_prefix()
NODE_PREFIX = kind_info("Node").list_prefix()
WEP_PREFIX = kind_info("WorkloadEndpoint").list_prefix()
RESERVATION_PREFIX = kind_info("IPReservation").list_prefix()


def check_segment(what: str, value: str) -> str:
    """Return `value` if it can be a key segment, else raise InvalidIpamRequest."""
    if not value or "/" in value or value in (".", ".."):
        raise InvalidIpamRequest(f"invalid {what} {value!r}: must be non-empty and contain no '/'")
    return value


def cidr_segment(cidr: IPNetwork) -> str:
    """`10.0.0.0/26` -> `10.0.0.0-26` (Calico replaces the slash by a dash)."""
    return f"{cidr.network_address}-{cidr.prefixlen}"


def parse_cidr_segment(segment: str) -> IPNetwork | None:
    addr, sep, plen = segment.rpartition("-")
    if not sep:
        return None
    try:
        return ipaddress.ip_network(f"{addr}/{plen}")
    except ValueError:
        return None


def block_prefix(fam: Family) -> str:
    return f"{BLOCK_ROOT}{fam.key}/block/"


def block_key(cidr: IPNetwork) -> str:
    return f"{block_prefix(family_of(cidr))}{cidr_segment(cidr)}"


def parse_block_key(key: str) -> IPNetwork | None:
    """The block CIDR of a block key, or None if `key` is not one."""
    for fam in FAMILIES:
        prefix = block_prefix(fam)
        if key.startswith(prefix):
            cidr = parse_cidr_segment(key[len(prefix) :])
            return cidr if cidr is not None and family_of(cidr) is fam else None
    return None


def host_affinity_prefix(host: str, fam: Family | None = None) -> str:
    check_segment("host name", host)
    if fam is None:
        return f"{HOST_ROOT}{host}/"
    return f"{HOST_ROOT}{host}/{fam.key}/block/"


def affinity_key(host: str, cidr: IPNetwork) -> str:
    return f"{host_affinity_prefix(host, family_of(cidr))}{cidr_segment(cidr)}"


def parse_affinity_key(key: str) -> tuple[str, IPNetwork] | None:
    """(host, block CIDR) of an affinity key, or None."""
    if not key.startswith(HOST_ROOT):
        return None
    parts = key[len(HOST_ROOT) :].split("/")
    if len(parts) != 4 or parts[2] != "block" or not parts[0]:
        return None
    cidr = parse_cidr_segment(parts[3])
    if cidr is None or family_of(cidr).key != parts[1]:
        return None
    return parts[0], cidr


def block_head_at(key: str, value: Mapping[str, Any]) -> BlockHead:
    """The routing part of the block stored at `key` (InvalidRecord if `key` is no block key or the
    value does not decode or names another CIDR)."""
    cidr = parse_block_key(key)
    if cidr is None:
        raise InvalidRecord(f"{key}: not a block key")
    return decode_block_head(value, cidr)


def affinity_at(key: str, value: Mapping[str, Any]) -> Affinity:
    """The block affinity stored at `key` (InvalidRecord if `key` is no affinity key or the value
    does not decode)."""
    parsed = parse_affinity_key(key)
    if parsed is None:
        raise InvalidRecord(f"{key}: not a block affinity key")
    return decode_affinity(parsed[0], parsed[1], value)


def handle_key(handle: str) -> str:
    return HANDLE_ROOT + check_segment("handle", handle)


def parse_handle_key(key: str) -> str | None:
    if not key.startswith(HANDLE_ROOT):
        return None
    rest = key[len(HANDLE_ROOT) :]
    return rest if rest and "/" not in rest else None


def node_key(host: str) -> str:
    return kind_info("Node").key(host)
