"""Dataplane managers: dataplane messages -> desired kernel state (on_update, no I/O) -> apply()
through the drivers (read back, diff, write the smallest change, keep failures dirty)."""
