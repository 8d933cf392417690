"""A reusable virtual datacenter in network namespaces (docs/design/lab.md).

state.py        LabState records <-> <workdir>/lab.json; StateStore, the one writer (record before create)
iproute.py      iproute2 batches and sysctl writes inside namespaces (the lab's door to the kernel)
fabric.py       AddressPlan (data) + Fabric: namespaces, bridge, veths, host/appliance addresses
processes.py    ProcessTable: start in a namespace, by role, signal, stop; teardown stragglers
workloads.py    plain Calico-style workloads plumbed by the lab
lab.py          Lab: the facade real-kernel tests use
spec.py, build.py, node_services.py, readiness.py, cni_workloads.py, etcd_members.py, routers.py,
relay.py, probe.py, lab_status.py, datacenter.py
                what `tortie lab` builds on top: Datacenter is the facade the CLI uses
faults.py, keeper.py
                fault injection (`tortie lab restart|kill|partition|heal`); the keeper that restarts
                etcd members as systemd would
"""

from tortie.lab.errors import LabError
from tortie.lab.lab import Lab
from tortie.lab.state import HostRecord, WorkloadRecord
from tortie.lab.workloads import host_interface_name

__all__ = ["HostRecord", "Lab", "LabError", "WorkloadRecord", "host_interface_name"]
