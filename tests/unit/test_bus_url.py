"""Broker URL parsing and unreachable-broker explanations."""

from __future__ import annotations

import re
import socket
import ssl

import pytest

from pipeline.bus.ports import BusError
from pipeline.bus.probe import describe_unreachable, explain
from pipeline.bus.url import BrokerAddress, parse_mqtt_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", BrokerAddress("127.0.0.1", 1883)),
        ("mqtt://broker:1884", BrokerAddress("broker", 1884)),
        ("mqtts://broker", BrokerAddress("broker", 8883, tls=True)),
        ("mqtts://st%40tion:p%3Ass@broker:8884/", BrokerAddress("broker", 8884, True, "st@tion", "p:ss")),
        ("mqtt://worker:@broker", BrokerAddress("broker", 1883, False, "worker", "")),
    ],
)
def test_parse_mqtt_url(url: str, expected: BrokerAddress) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://broker", "must start with mqtt:// or mqtts://"),
        ("broker:1883", "must start with mqtt://"),
        ("mqtt://", "has no host"),
        ("mqtt://broker:99999", "not valid"),
        ("mqtt://broker/topic", "host[:port] only"),
    ],
)
def test_bad_urls_name_the_setting(url: str, expected: str) -> None:
    with pytest.raises(BusError, match=re.escape(expected)) as caught:
        parse_mqtt_url(url)
    assert "EDGELINE_MQTT_URL" in str(caught.value)


def test_password_never_shown() -> None:
    address = parse_mqtt_url("mqtt://user:hunter2@broker")
    assert "hunter2" not in repr(address) + str(address) + address.url
    assert address.url == "mqtt://broker:1883"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused — is it running?"),
        (socket.gaierror(-2, "Name or service not known"), "unknown host"),
        (TimeoutError("timed out"), "timed out"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]"), "TLS handshake failed"),
        (OSError(113, "No route to host"), "No route to host"),
    ],
)
def test_explain_socket_errors(error: OSError, expected: str) -> None:
    assert expected in explain(error)


def test_describe_unreachable_probes_the_port(free_tcp_port: int) -> None:
    assert "connection refused" in describe_unreachable(BrokerAddress("127.0.0.1", free_tcp_port))
