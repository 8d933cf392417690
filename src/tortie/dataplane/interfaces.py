"""Which host interfaces belong to tortie: the interface-prefix rule.

Input: the configured prefixes (agent config `interface_prefix`). Output: `InterfacePrefixes`, a
frozen value answering `owns(name)`.

Invariant: the dataplane never touches (routes, sysctls, adoption/cleanup) an interface whose name
does not start with one of these prefixes. The default is `("tort",)`: four characters leave the
eleven hex characters of a hash within the kernel's 15-character interface-name limit
(`tort` + 11 = 15, like Calico's `cali` + 11). OpenStack deployments add `tap` (Nova names VM
taps `tap` + 11 characters of the port UUID).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_INTERFACE_PREFIXES: tuple[str, ...] = ("tort",)
MAX_IFNAME_LEN = 15
"""Linux IFNAMSIZ (16) minus the terminating NUL."""


@dataclass(frozen=True)
class InterfacePrefixes:
    """The set of interface-name prefixes tortie owns (non-empty, each shorter than an ifname)."""

    prefixes: tuple[str, ...] = DEFAULT_INTERFACE_PREFIXES

    def __post_init__(self) -> None:
        if not self.prefixes:
            raise ValueError("at least one interface prefix is required")
        for prefix in self.prefixes:
            if not prefix or len(prefix) >= MAX_IFNAME_LEN or "/" in prefix or " " in prefix:
                raise ValueError(f"invalid interface prefix {prefix!r}")

    @classmethod
    def of(cls, prefixes: Iterable[str] | InterfacePrefixes | None) -> InterfacePrefixes:
        """Accept a ready value, an iterable of strings, or None (the default)."""
        if prefixes is None:
            return cls()
        if isinstance(prefixes, InterfacePrefixes):
            return prefixes
        return cls(tuple(prefixes))

    def owns(self, ifname: str | None) -> bool:
        return ifname is not None and ifname.startswith(self.prefixes)

    def __str__(self) -> str:
        return ",".join(self.prefixes)
