"""User-space policy decisions over the resolved policy state (what the calc sends the dataplane)."""
