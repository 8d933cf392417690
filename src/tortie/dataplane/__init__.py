"""The dataplane half of the agent: messages from calc -> managers -> drivers -> kernel."""
