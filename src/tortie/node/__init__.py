"""The node service (`tortie node run`): Node registration with BGP address autodetection, then the
agent and the BGP daemon, supervised. See docs/design/node.md.

    autodetect.py    IP autodetection methods (first-found, interface=, skip-interface=, can-reach=, cidr=)
    registration.py  create/update the Node resource (CAS; only the fields the service owns)
    supervisor.py    restart components with backoff (child processes and in-process threads)
    service.py       NodeConfig, NodeService (the main loop, node.json status)
"""

from tortie.node.registration import NodeAddressConflict, NodeAddresses, register_node
from tortie.node.service import NodeConfig, NodeService, read_node_status

__all__ = [
    "NodeAddressConflict",
    "NodeAddresses",
    "NodeConfig",
    "NodeService",
    "read_node_status",
    "register_node",
]
