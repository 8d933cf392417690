"""Shipped test support, maintained like product code: fakes, fixtures and conformance suites.

Each seam with the outside world has a real implementation, a fake, and one conformance suite run
against both (e.g. `datastore_conformance` over memory, sqlite and etcd; `etcd_cluster` starts real
etcd members for integration tests and benchmarks). Importing this package imports nothing heavy.
"""
