"""DHCP for routed VMs: `tortie dhcp run` serves this host's tap interfaces with dnsmasq, configured
from the datastore (WorkloadEndpoints + the subnet records an orchestrator publishes)."""
