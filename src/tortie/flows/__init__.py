"""Flow logs: what the network did, per flow, with the policy verdict (docs/design/flows.md).

    catalog.py      NFLOG prefix -> the rule it names (fed by the calc's policy messages)
    records.py      FlowRecord and its JSON-lines form (the store's and the API's)
    directory.py    address -> endpoint, host endpoint, network set or outside network
    aggregate.py    kernel observations -> records per flush interval (pure)
    pending.py      the verdict staged policies would give (a second policy calc, user space)
    store.py        the bounded local store: JSON lines, rotation, size cap; reading and following
    collector.py    the agent's flow logger thread: NFLOG + conntrack in, records out
    query.py        filters of `tortie flows`, the API and the UI
"""
