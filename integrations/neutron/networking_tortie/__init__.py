"""networking-tortie: the OpenStack Neutron ML2 mechanism driver for tortie.

Neutron is the source of truth; tortie's datastore mirrors it. The package splits into pure
translation (Neutron dicts -> projectcalico.org/v3 resources; no Neutron import), the datastore
side (writes with compare-and-swap, resync, election, status) and the thin Neutron-facing driver:

    translate_*   pure functions: port -> WorkloadEndpoint, security group -> NetworkPolicy,
                  subnet -> DHCP record + IPPool
    writer        desired resources -> datastore (CAS, bounded retries)
    resync        Neutron DB snapshot vs datastore -> repairs
    election      lease-based master election in the datastore
    status        agent endpoint status keys -> Neutron port status
    mech_driver   the ML2 MechanismDriver (the only module that imports neutron at load time)
"""
