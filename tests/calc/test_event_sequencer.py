"""Event sequencer: coalescing per key, dependency order, InSync once, nothing before in-sync."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from tortie.calc.event_sequencer import Channel, EventSequencer
from tortie.dataplane import messages as m


def _ep(name: str, iface: str = "tort1") -> m.WorkloadEndpointUpdate:
    return m.WorkloadEndpointUpdate(id=m.WorkloadEndpointId("ns", name), interface_name=iface)


def _ep_remove(key: Hashable) -> m.Message:
    assert isinstance(key, m.WorkloadEndpointId)
    return m.WorkloadEndpointRemove(key)


CHANNELS = (Channel("endpoints", 40, _ep_remove), Channel("blocks", 50, lambda k: m.HostBlockRemove(str(k))))


@pytest.fixture
def out() -> list[m.Message]:
    return []


@pytest.fixture
def seq(out: list[m.Message]) -> EventSequencer:
    sequencer = EventSequencer(out.append, CHANNELS)
    sequencer.queue_config({"a": 1})
    return sequencer


def _in_sync(seq: EventSequencer, out: list[m.Message]) -> None:
    seq.on_datastore_in_sync()
    seq.flush()
    out.clear()


def test_nothing_is_sent_before_the_datastore_in_sync(seq: EventSequencer, out: list[m.Message]) -> None:
    seq.queue_update("endpoints", _ep("a").id, _ep("a"))
    assert seq.flush() == 0 and out == []
    seq.on_datastore_in_sync()
    seq.flush()
    assert out == [m.ConfigUpdate({"a": 1}), _ep("a"), m.InSync()]


def test_in_sync_is_sent_once_after_the_first_full_flush(seq: EventSequencer, out: list[m.Message]) -> None:
    seq.on_datastore_in_sync()
    seq.flush()
    seq.on_datastore_in_sync()  # a resync's InSync
    seq.queue_update("blocks", "10.0.0.0/26", m.HostBlockUpdate("10.0.0.0/26"))
    seq.flush()
    assert out == [m.ConfigUpdate({"a": 1}), m.InSync(), m.HostBlockUpdate("10.0.0.0/26")]


def test_update_then_remove_of_an_unsent_key_sends_nothing(seq: EventSequencer, out: list[m.Message]) -> None:
    _in_sync(seq, out)
    seq.queue_update("endpoints", _ep("a").id, _ep("a"))
    seq.queue_remove("endpoints", _ep("a").id)
    assert seq.flush() == 0 and out == []


def test_update_then_remove_of_a_sent_key_sends_only_the_remove(
    seq: EventSequencer, out: list[m.Message]
) -> None:
    seq.queue_update("endpoints", _ep("a").id, _ep("a"))
    _in_sync(seq, out)
    seq.queue_update("endpoints", _ep("a").id, _ep("a", "tort2"))
    seq.queue_remove("endpoints", _ep("a").id)
    seq.flush()
    assert out == [m.WorkloadEndpointRemove(_ep("a").id)]
    seq.queue_remove("endpoints", _ep("a").id)  # already removed: nothing more
    assert seq.flush() == 0


def test_updates_coalesce_to_the_last_and_equal_updates_are_dropped(
    seq: EventSequencer, out: list[m.Message]
) -> None:
    seq.queue_update("endpoints", _ep("a").id, _ep("a"))
    _in_sync(seq, out)
    seq.queue_update("endpoints", _ep("a").id, _ep("a", "tort2"))
    seq.queue_update("endpoints", _ep("a").id, _ep("a", "tort3"))
    seq.flush()
    assert out == [_ep("a", "tort3")]
    out.clear()
    seq.queue_update("endpoints", _ep("a").id, _ep("a", "tort3"))
    seq.queue_config({"a": 1})
    assert seq.flush() == 0 and out == []
    seq.queue_remove("endpoints", _ep("a").id)
    seq.queue_update("endpoints", _ep("a").id, _ep("a", "tort3"))  # back to what the dataplane has
    assert seq.flush() == 0


def test_flush_order_config_removes_by_descending_rank_then_updates_by_ascending_rank(
    seq: EventSequencer, out: list[m.Message]
) -> None:
    seq.queue_update("endpoints", _ep("old").id, _ep("old"))
    seq.queue_update("blocks", "10.0.0.0/26", m.HostBlockUpdate("10.0.0.0/26"))
    _in_sync(seq, out)
    seq.queue_update("blocks", "10.0.1.0/26", m.HostBlockUpdate("10.0.1.0/26"))
    seq.queue_update("endpoints", _ep("new").id, _ep("new"))
    seq.queue_remove("endpoints", _ep("old").id)
    seq.queue_remove("blocks", "10.0.0.0/26")
    seq.queue_config({"a": 2})
    seq.flush()
    assert out == [
        m.ConfigUpdate({"a": 2}),
        m.HostBlockRemove("10.0.0.0/26"),
        m.WorkloadEndpointRemove(_ep("old").id),
        _ep("new"),
        m.HostBlockUpdate("10.0.1.0/26"),
    ]


def test_a_config_is_required_before_the_first_flush(out: list[m.Message]) -> None:
    seq = EventSequencer(out.append, CHANNELS)
    seq.on_datastore_in_sync()
    with pytest.raises(RuntimeError):
        seq.flush()


def test_duplicate_channel_names_are_rejected(out: list[m.Message]) -> None:
    with pytest.raises(ValueError):
        EventSequencer(out.append, (*CHANNELS, CHANNELS[0]))
