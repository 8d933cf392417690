"""A reusable virtual datacenter in network namespaces.

`Lab` (lab.py) is the namespace layer tests build on; `tortie.lab.datacenter.Datacenter` is what
`tortie lab up` builds on top of it (node services, datastore, ToR, CNI workloads, probes). See
docs/design/lab.md.
"""

from tortie.lab.lab import Lab, LabError, host_interface_name
from tortie.lab.state import HostRecord, WorkloadRecord

__all__ = ["HostRecord", "Lab", "LabError", "WorkloadRecord", "host_interface_name"]
