"""The shared half of the rtnetlink drivers (routes, links, VXLAN, shaping): one `NetnsRtnl` opened in
the driver's namespace on first use, the namespace it works in, and `close()`."""

from __future__ import annotations

from tortie.kernel.rtnl import NetnsRtnl


class RtnlDriver:
    def __init__(self, netns: str | None, name: str) -> None:
        self._rtnl = NetnsRtnl(netns, name)

    @property
    def netns(self) -> str | None:
        """The namespace the driver programs (None: the process's own)."""
        return self._rtnl.netns

    def close(self) -> None:
        self._rtnl.close()
