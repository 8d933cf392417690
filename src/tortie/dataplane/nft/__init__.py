"""nftables for the policy dataplane, pure: the rule model (ir), names, rendering parameters (config),
the table's parts (sets, rules, endpoints, host_endpoints, static_chains) assembled per owner from
the desired state (ruleset), the batch builder (batch), the read-back parser (parse) and an
interpreter of the model (interp). docs/design/policy.md maps them."""
