"""nftables for the policy dataplane: the rule model (ir), the pure renderer of desired state (render),
the batch builder (batch), the read-back parser (parse) and an interpreter of the model (interp)."""
