"""The node service starts the agent without datastore secrets on its command line (readable via ps)."""

from __future__ import annotations

from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.url import PASSWORD_ENV_VAR
from tortie.node.service import NodeConfig, NodeService


def test_agent_argv_carries_no_password_and_env_does() -> None:
    url = "etcds://10.0.0.1:2379,10.0.0.2:2379?cacert=/etc/tortie/ca.pem&username=tortie&password=hunter2"
    config = NodeConfig(hostname="h1", run_dir="/nonexistent", datastore_url=url)
    service = NodeService(config, MemoryDatastore())
    agent = service.agent_component()
    assert not any("hunter2" in arg for arg in agent.argv)
    assert agent.argv[agent.argv.index("--datastore") + 1] == (
        "etcds://10.0.0.1:2379,10.0.0.2:2379?cacert=/etc/tortie/ca.pem&username=tortie"
    )
    assert agent.env is not None and agent.env[PASSWORD_ENV_VAR] == "hunter2"


def test_urls_without_secrets_pass_unchanged() -> None:
    url = "etcd://10.0.0.1:2379?username=tortie&password_file=/etc/tortie/etcd-password"
    config = NodeConfig(hostname="h1", run_dir="/nonexistent", datastore_url=url)
    service = NodeService(config, MemoryDatastore())
    agent = service.agent_component()
    assert agent.argv[agent.argv.index("--datastore") + 1] == url
