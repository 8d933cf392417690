"""Datastores: one key/value `Datastore` protocol with sqlite (default), etcd and memory backends.

`open_datastore(url)` picks the backend from a URL; see `tortie.datastore.api` for the contract.
"""
