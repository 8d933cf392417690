"""Kernel drivers of the dataplane: routes, links, VXLAN, shaping and sysctls (netlink / procfs), each a small
Protocol with a real implementation and an in-memory fake (`tortie.testing.kernel_fake.FakeKernel`)."""
