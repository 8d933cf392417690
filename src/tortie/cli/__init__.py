"""The `tortie` command line: calicoctl-style verbs plus node, ipam, policy and lab groups."""
