"""The shared half of the rtnetlink drivers (routes, links, VXLAN, shaping): one `NetnsRtnl` opened
in the driver's namespace on first use, the namespace it works in, `close()`, and deleting an
interface by name."""

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

    def _delete_link(self, name: str) -> None:
        """Delete interface `name` if it exists (callers wrap it in `kernel_call`)."""
        rtnl = self._rtnl.get()
        link = rtnl.get_link(name)
        if link is not None:
            rtnl.delete_link(link.ifindex)
