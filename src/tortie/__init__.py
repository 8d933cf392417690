"""tortie: pure Layer-3 virtual networking for VMs and containers, compatible with Calico's v3 model."""

__version__ = "0.1.0"
