"""Group-coordinator requests run on a private admin client that is gone before the call
returns or raises (librdkafka 2.16 aborts a process whose client outlives a timed-out one)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streamtasks.kafka import clients

NOWHERE = {"bootstrap.servers": "127.0.0.1:9"}  # a client is built without connecting


def _failing_like_a_timed_out_request(
    seen: list[weakref.ref[AdminClient]],
) -> Callable[[AdminClient], None]:
    def request(admin: AdminClient) -> None:
        seen.append(weakref.ref(admin))
        future: Future[None] = Future()  # the cycle a failed future leaves: future,
        future.set_exception(KafkaException(KafkaError(KafkaError._TIMED_OUT)))  # exception,
        future.result()  # traceback, this frame (which holds the client)

    return request


def test_the_private_client_is_destroyed_before_the_failure_reaches_the_caller() -> None:
    admin = clients.make_admin(NOWHERE)
    seen: list[weakref.ref[AdminClient]] = []
    with pytest.raises(KafkaException) as info:
        clients._on_own_client(admin, _failing_like_a_timed_out_request(seen))
    (private,) = seen
    assert private() is None, "the private client outlived the failed request"
    assert private is not weakref.ref(admin)
    assert info.value.args[0].code() == KafkaError._TIMED_OUT


def test_a_result_comes_back_and_the_private_client_is_gone() -> None:
    admin = clients.make_admin(NOWHERE)
    seen: list[weakref.ref[AdminClient]] = []

    def request(a: AdminClient) -> str:
        seen.append(weakref.ref(a))
        assert a is not admin  # never the caller's long-lived client
        return "described"

    assert clients._on_own_client(admin, request) == "described"
    assert seen[0]() is None


def test_a_client_not_built_by_make_admin_is_used_as_it_is() -> None:
    raw = AdminClient(NOWHERE)
    assert clients._on_own_client(raw, lambda a: a is raw) is True
