"""tortie.bgp: BGP with BIRD 2 — what a node says (view), how BIRD is told (render), BIRD's supervision
(daemon) and what BIRD reports (control, status). See docs/design/bgp.md.

    records   the datastore facts BGP reads, as small frozen records
    snapshot  stored objects -> records (model validation; invalid = absent)
    view      pure: Snapshot + host name -> NodeView (sessions, pools, blocks, communities)
    render    pure: NodeView -> bird.conf text
    control   BIRD control-socket client (what birdc speaks)
    status    parse `show protocols all` / `show route` into peer rows and advertised prefixes
    secrets   BGP passwords from secret files
    daemon    `tortie bgp run`: syncer -> view -> render -> configure; BIRD restarts; status.json
"""
