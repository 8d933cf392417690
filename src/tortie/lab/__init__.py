"""A reusable virtual datacenter in network namespaces (see lab.py); the CLI comes later."""

from tortie.lab.lab import Lab, LabError, host_interface_name
from tortie.lab.state import HostRecord, WorkloadRecord

__all__ = ["HostRecord", "Lab", "LabError", "WorkloadRecord", "host_interface_name"]
