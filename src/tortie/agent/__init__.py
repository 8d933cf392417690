"""The per-host agent (Calico's Felix): configuration, wiring, health, metrics and status reporting.

`tortie agent run` starts `tortie.agent.main.run_agent`; see docs/design/agent.md.
"""
