"""The driver's options, group `[tortie]` of neutron.conf / ml2_conf.ini (oslo.config).

    [tortie]
    datastore = etcd://10.0.0.5:2379        # tortie datastore URL (default: $TORTIE_DATASTORE or
                                             # the embedded sqlite file)
    region =                                 # OpenStack region (namespace openstack-region-<r>)
    elector_name = <hostname>
    election_interval = 10                   # master refreshes its lease this often (s)
    election_ttl = 60                        # lease TTL: takeover delay after a master dies (s)
    election_check_interval = 5              # non-masters retry this often (s)
    resync_on_start = true                   # full resync when this process becomes master
    resync_interval = 300                    # periodic resync on the master (s; 0 = never)
    require_live_agent = true                # bind only on hosts whose tortie agent reports live
    write_attempts = 5                       # compare-and-swap attempts per postcommit write
    status_flowback = true                   # agent endpoint status -> Neutron port status

`TortieConfig` is the frozen, typed snapshot the rest of the package uses (`from_oslo`).
"""

from __future__ import annotations

from dataclasses import dataclass

from oslo_config import cfg

GROUP = "tortie"

OPTS = [
    cfg.StrOpt("datastore", help="tortie datastore URL (sqlite:///path.db, etcd://host:port,...)."),
    cfg.StrOpt("region", default="", help="OpenStack region of this Neutron (empty: no region)."),
    cfg.StrOpt("elector_name", help="Name this server uses in the master election (default: hostname)."),
    cfg.FloatOpt("election_interval", default=10.0, min=0.05, help="Master lease refresh period (s)."),
    cfg.FloatOpt("election_ttl", default=60.0, min=0.1,
                 help="Master lease TTL (s); must exceed the interval."),
    cfg.FloatOpt("election_check_interval", default=5.0, min=0.05, help="Non-master retry period (s)."),
    cfg.BoolOpt("resync_on_start", default=True, help="Resync everything when becoming master."),
    cfg.FloatOpt("resync_interval", default=300.0, min=0.0, help="Periodic resync period on the master "
                 "(s; 0 disables)."),
    cfg.BoolOpt("require_live_agent", default=True, help="Bind ports only on hosts whose tortie agent "
                "reports itself alive in the datastore."),
    cfg.IntOpt("write_attempts", default=5, min=1, help="Compare-and-swap attempts per datastore write."),
    cfg.BoolOpt("status_flowback", default=True, help="Report agent endpoint status as Neutron port status."),
]


def register_options(conf: cfg.ConfigOpts = cfg.CONF) -> None:
    conf.register_opts(OPTS, group=GROUP)


@dataclass(frozen=True)
class TortieConfig:
    datastore: str | None = None
    region: str = ""
    elector_name: str | None = None
    election_interval: float = 10.0
    election_ttl: float = 60.0
    election_check_interval: float = 5.0
    resync_on_start: bool = True
    resync_interval: float = 300.0
    require_live_agent: bool = True
    write_attempts: int = 5
    status_flowback: bool = True

    @classmethod
    def from_oslo(cls, conf: cfg.ConfigOpts = cfg.CONF) -> TortieConfig:
        register_options(conf)
        group = getattr(conf, GROUP)
        return cls(**{name: getattr(group, name) for name in cls.__dataclass_fields__})
