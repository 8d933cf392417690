"""tortie.cni: the `tortie` CNI plugin and the `tortie-ipam` IPAM plugin (reference §7, §5.6).

    main.py                      the executables' one entry point: main("tortie") / main("tortie-ipam")
    runner.py                    the CNI calling convention: env + stdin -> verb -> stdout, exit code
    request.py, netconf.py       the runtime's inputs, parsed and checked before any side effect
    result.py                    results and their conversion between CNI versions
    workload.py, ipam_verbs.py   the verbs; ipam_core.py the shared IPAM calls
    naming.py, endpoint.py       identities, names, and the WorkloadEndpoint written to the datastore
    plumbing.py                  the kernel seam (Protocol); netlink_plumber.py real (over tortie.kernel),
                                 tortie.testing.fake_plumber the fake
    delegate.py                  running another IPAM plugin (e.g. host-local) found in CNI_PATH
    install.py                   launchers named `tortie` and `tortie-ipam` for a CNI plugin directory

See docs/design/cni.md and docs/reference/cni.md. Keep imports here empty: the plugins start fast.
"""
