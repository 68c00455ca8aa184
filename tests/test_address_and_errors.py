"""Addresses round-trip; every error survives the trip over the wire as the same type."""

from __future__ import annotations

import pytest

from requestplane_core import (
    Address,
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestPlaneError,
    Unavailable,
    error_from_wire,
)
from requestplane_core.errors import _BY_CODE


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:41234/echo",
        "http://127.0.0.1:8080/v1/rpc/echo",
        "nats://127.0.0.1:4222/rp.default.echo",
        "tcp://[::1]:9000/stream",
        "tcp://host.example/with%20space",
    ],
)
def test_address_round_trips(url: str) -> None:
    address = Address.parse(url)
    assert str(address) == url
    assert Address.parse(str(address)) == address


def test_address_parts() -> None:
    a = Address.parse("http://127.0.0.1:8080/v1/rpc/echo")
    assert (a.scheme, a.host, a.port, a.path, a.endpoint) == (
        "http",
        "127.0.0.1",
        8080,
        "v1/rpc/echo",
        "echo",
    )


@pytest.mark.parametrize(
    "bad",
    ["echo", "127.0.0.1:80/echo", "tcp://h:99999/e", "", "localhost:8080/echo", "tcp:host/echo"],
)
def test_bad_address_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="not an address"):
        Address.parse(bad)


@pytest.mark.parametrize(
    "error",
    [
        EndpointNotFound("no such"),
        Overloaded("busy"),
        Unavailable("draining"),
        DeadlineExceeded("late"),
        PayloadTooLarge("big"),
        ConnectionLost("gone"),
        ProtocolError("garbage"),
    ],
)
def test_errors_round_trip_over_the_wire(error: RequestPlaneError) -> None:
    back = error_from_wire(error.code, error.message)
    assert type(back) is type(error)
    assert back.message == error.message


def test_remote_error_carries_type_and_message() -> None:
    back = error_from_wire("remote", "bad input", "ValueError")
    assert isinstance(back, RemoteError)
    assert (back.type_name, back.remote_message) == ("ValueError", "bad input")


def test_unknown_code_from_a_newer_peer_is_still_an_error() -> None:
    back = error_from_wire("from-the-future", "hm")
    assert type(back) is RequestPlaneError and back.message == "hm"


def test_exactly_the_shed_errors_are_retriable_across_the_wire() -> None:
    # Every class a peer can send, rebuilt from its code: only refusals that happened before
    # the handler ran (Overloaded, Unavailable and its kinds) may be retried.
    classes = [*_BY_CODE.values(), RemoteError, RequestPlaneError]
    retriable = {cls for cls in classes if error_from_wire(cls.code, "m", "T").retriable}
    shed = {cls for cls in classes if issubclass(cls, (Overloaded, Unavailable))}
    assert retriable == shed
    assert {Overloaded, Unavailable} <= shed
    assert {ConnectionLost, ProtocolError, DeadlineExceeded} <= set(_BY_CODE.values())
