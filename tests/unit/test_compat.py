"""The private APIs of aiokafka and Faust we rely on still exist where we reach them."""

from __future__ import annotations

import contextvars
import inspect
import weakref

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import AIOKafkaConnection
from faust import streams as faust_streams

from streams._faust import as_current

pytestmark = pytest.mark.unit


def test_faust_current_event_is_set_and_reset_around_a_table_write() -> None:
    current = faust_streams._current_event
    assert isinstance(current, contextvars.ContextVar)
    before = current.get(None)
    event = type("Event", (), {})()
    with as_current(event):
        ref = current.get()
        assert isinstance(ref, weakref.ref)
        assert ref() is event
    assert current.get(None) is before


async def test_aiokafka_metadata_and_connections_are_where_we_reach_them() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
    try:
        client = consumer._client
        assert isinstance(client, AIOKafkaClient)
        assert inspect.iscoroutinefunction(client.fetch_all_metadata)
        assert client._conns == {}
        # close() must stay synchronous: stop_client calls it while being cancelled.
        assert not inspect.iscoroutinefunction(AIOKafkaConnection.close)
    finally:
        await consumer.stop()
