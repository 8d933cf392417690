"""tortie.calc: the agent's pure calculation (datastore events in, dataplane messages out).

No I/O, no clock, no threads: the same input always gives the same output. Entry point:
`tortie.calc.calc_graph.CalcGraph`. See docs/design/calc.md.
"""
