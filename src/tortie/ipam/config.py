"""The IPAM configuration: Calico's backend record, the v3 IPAMConfiguration resource, and which wins.

    /calico/ipam/v2/config   {"strict_affinity", "auto_allocate_blocks", "maxBlocksPerHost",
                             "ipCooldownSeconds"}  (Calico's JSON tags; tortie also reads
                             "max_blocks_per_host")
    IPAMConfiguration default (v3, as `tortie apply` stores it)

IPAM honours whichever of the two was written last (`newest_config`). Blocks, affinities and handles
are decoded by `tortie.model.ipam_records`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tortie.common.errors import InvalidRecord
from tortie.ipam.errors import InvalidIpamRequest

log = logging.getLogger(__name__)

# Calico: maxBlocksPerHost 0 means "use the default cap" of 20 blocks per host.
DEFAULT_MAX_BLOCKS_PER_HOST = 20
# Calico caps ipCooldownSeconds at 20 minutes.
MAX_IP_COOLDOWN_SECONDS = 1200


@dataclass(frozen=True)
class IpamConfig:
    """Cluster-wide IPAM settings. `max_blocks_per_host` 0 = Calico's default cap (20);
    `ip_cooldown_seconds`: how long a released address stays out of use (0 = reusable at once)."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0
    ip_cooldown_seconds: int = 0

    @property
    def effective_max_blocks_per_host(self) -> int:
        return self.max_blocks_per_host or DEFAULT_MAX_BLOCKS_PER_HOST

    def problems(self) -> list[str]:
        """Calico's cross-field rules (reference §1.2), as sentences."""
        out: list[str] = []
        if self.max_blocks_per_host < 0:
            out.append("maxBlocksPerHost must be >= 0")
        if not 0 <= self.ip_cooldown_seconds <= MAX_IP_COOLDOWN_SECONDS:
            out.append(f"ipCooldownSeconds must be between 0 and {MAX_IP_COOLDOWN_SECONDS}")
        if not self.strict_affinity and not self.auto_allocate_blocks:
            out.append("autoAllocateBlocks=false requires strictAffinity=true (nothing could be allocated)")
        return out


def encode_config(cfg: IpamConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "strict_affinity": cfg.strict_affinity,
        "auto_allocate_blocks": cfg.auto_allocate_blocks,
        "maxBlocksPerHost": cfg.max_blocks_per_host,
    }
    if cfg.ip_cooldown_seconds:  # omitted when 0, as Calico's omitempty does
        out["ipCooldownSeconds"] = cfg.ip_cooldown_seconds
    return out


def decode_config(obj: Mapping[str, Any] | None) -> IpamConfig:
    """Missing fields take tortie's defaults (auto-allocate on, strict off, cap 0 = 20)."""
    if obj is None:
        return IpamConfig()
    max_blocks = obj.get("maxBlocksPerHost", obj.get("max_blocks_per_host", 0)) or 0
    if isinstance(max_blocks, bool) or not isinstance(max_blocks, int):
        raise InvalidRecord(f"IPAM config maxBlocksPerHost: expected an integer, got {max_blocks!r}")
    cooldown = obj.get("ipCooldownSeconds", 0) or 0
    if isinstance(cooldown, bool) or not isinstance(cooldown, int):
        raise InvalidRecord(f"IPAM config ipCooldownSeconds: expected an integer, got {cooldown!r}")
    return IpamConfig(
        strict_affinity=bool(obj.get("strict_affinity", False)),
        auto_allocate_blocks=bool(obj.get("auto_allocate_blocks", True)),
        max_blocks_per_host=max_blocks,
        ip_cooldown_seconds=min(max(cooldown, 0), MAX_IP_COOLDOWN_SECONDS),
    )


def config_from_resource(obj: Mapping[str, Any]) -> IpamConfig | None:
    """The settings of a v3 `IPAMConfiguration` resource (as `tortie apply` stores it), or None when it
    does not validate (an invalid resource is treated as absent, with a warning)."""
    from tortie.model import ValidationError, parse_resource

    try:
        spec = parse_resource(obj).spec
    except ValidationError as exc:
        log.warning("ignoring invalid IPAMConfiguration resource: %s", exc)
        return None
    return IpamConfig(
        strict_affinity=bool(getattr(spec, "strict_affinity", None)),
        auto_allocate_blocks=getattr(spec, "auto_allocate_blocks", None) is not False,
        max_blocks_per_host=int(getattr(spec, "max_blocks_per_host", None) or 0),
        ip_cooldown_seconds=int(getattr(spec, "ip_cooldown_seconds", None) or 0),
    )


def newest_config(
    backend: tuple[int, Mapping[str, Any]] | None, resource: tuple[int, Mapping[str, Any]] | None
) -> IpamConfig:
    """The effective configuration from Calico's backend key and the v3 resource key, each given as
    (mod_revision, value): the most recently written valid one wins; defaults when neither exists."""
    candidates: list[tuple[int, IpamConfig]] = []
    if backend is not None:
        candidates.append((backend[0], decode_config(backend[1])))
    if resource is not None:
        cfg = config_from_resource(resource[1])
        if cfg is not None:
            candidates.append((resource[0], cfg))
    return max(candidates, key=lambda c: c[0])[1] if candidates else IpamConfig()


def validated_config(cfg: IpamConfig) -> IpamConfig:
    problems = cfg.problems()
    if problems:
        raise InvalidIpamRequest("invalid IPAM configuration: " + "; ".join(problems))
    return cfg
