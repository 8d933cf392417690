"""tortie.kernel: the one place that speaks Linux (stdlib only; the CNI plugin imports it on every call).

    netlink.py      netlink socket, message and attribute framing, sequence numbers, the request /
                    ACK / dump / batch exchange, extended-ack error text -> tortie.common.errors
    rtnl_codec.py   rtnetlink bodies and records: links (veth, vxlan), addresses, routes, neighbours, FDB
    rtnl.py         `Rtnl`: those requests over one NETLINK_ROUTE socket
    nfnetlink.py    nftables set/map element changes as one nfnetlink batch (`ElementSocket`)
    netns.py        open / enter a network namespace, run a function inside one, `NetnsWorker`
    sysctl.py       /proc/sys reads and writes, in the process's or a named namespace

Errors are `tortie.common.errors.KernelError` and its subclasses (`NetlinkError`, `LinkNotFound`,
`NetnsNotFound`); nothing raised here is an OSError. Keep imports here empty: callers import the
module they use, so the CNI plugin pays only for what it needs. See docs/design/kernel.md.
"""
