"""The rabbitmq broker's TLS: the shared options, and real TLS in front of the real broker.

The machine's RabbitMQ has no TLS listener, so these tests reach it through a TLS-terminating
proxy with a private CA's certificate (see conftest): the TLS handshake, certificate and name
checks are real, and so is the AMQP behind them; RabbitMQ's own TLS listener is not exercised.
"""

from __future__ import annotations

import socket
import ssl
import uuid

import pytest
from ductwork.errors import ConfigError, ConnectionFailedError
from ductwork.providers import ProviderContext
from ductwork.providers.tls import client_context
from ductwork_rabbitmq.broker import RabbitMQBroker, RabbitMQBrokerOptions
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="brokers.bus", env="test", provider="rabbitmq")
EXPIRES = "120s"


def make(exchange: str, **options) -> RabbitMQBroker:
    options = {
        "exchange": f"{exchange}-tls",
        "queue_expires": EXPIRES,
        "connect_timeout": 5,
        **options,
    }
    return RabbitMQBroker.from_options(CONTEXT, **options)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _round_trip(broker: RabbitMQBroker) -> None:
    topic = f"t{uuid.uuid4().hex[:12]}"
    async with await broker.subscribe(topic, "g") as sub:
        await broker.publish(topic, b"over tls", key="k")
        delivery = await sub.receive(timeout=10)
        assert delivery is not None and delivery.message.body == b"over tls"
        await delivery.ack()


async def test_publish_and_subscribe_over_tls_with_the_private_ca(exchange, tls_port, tls):
    broker = make(exchange, host="127.0.0.1", port=tls_port, ssl=True, ca_file=str(tls.ca))
    async with broker:
        await _round_trip(broker)
    assert broker.endpoint == f"amqps://127.0.0.1:{tls_port}/"


async def test_an_amqps_url_with_the_private_ca(exchange, tls_port, tls):
    url = f"amqps://guest:guest@127.0.0.1:{tls_port}/"
    async with make(exchange, url=url, ca_file=str(tls.ca)) as broker:
        await _round_trip(broker)


async def test_the_urls_own_tls_parameters_still_work(exchange, tls_port, tls):
    url = f"amqps://guest:guest@127.0.0.1:{tls_port}/?cafile={tls.ca}"
    async with make(exchange, url=url) as broker:
        await _round_trip(broker)


@pytest.mark.parametrize("trust", ["system store", "another CA"])
async def test_an_untrusted_certificate_fails_clearly_without_the_password(
    trust, exchange, tls_port, tmp_path_factory
):
    options = {}
    if trust == "another CA":
        from ductwork.testing.tls import tls_files

        options["ca_file"] = str(tls_files(tmp_path_factory.mktemp("stranger")).ca)
    # The handshake fails before any login, so the password need not be the right one.
    broker = make(
        exchange, host="127.0.0.1", port=tls_port, ssl=True, password="s3cret-pw", **options
    )
    with pytest.raises(ConnectionFailedError) as info:
        await broker.open()
    await broker.close()
    text = str(info.value)
    assert "certificate was not accepted" in text and "ca_file" in text
    assert "s3cret-pw" not in text and "brokers.bus" in text and f":{tls_port}" in text


async def test_a_client_certificate(exchange, mutual_tls_port, tls):
    client = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    broker = make(
        exchange, host="127.0.0.1", port=mutual_tls_port, ssl=True, ca_file=str(tls.ca), **client
    )
    async with broker:
        await _round_trip(broker)


async def test_without_the_client_certificate_asked_for_it_fails(exchange, mutual_tls_port, tls):
    broker = make(exchange, host="127.0.0.1", port=mutual_tls_port, ssl=True, ca_file=str(tls.ca))
    with pytest.raises(ConnectionFailedError, match=f":{mutual_tls_port}"):
        await broker.open()
    await broker.close()


async def test_a_certificate_for_another_host_fails_clearly(
    exchange, misnamed_tls_port, misnamed_tls
):
    broker = make(
        exchange, host="127.0.0.1", port=misnamed_tls_port, ssl=True, ca_file=str(misnamed_tls.ca)
    )
    with pytest.raises(ConnectionFailedError, match="does not name the host"):
        await broker.open()
    await broker.close()


async def test_a_missing_ca_file_is_a_config_error_before_connecting(tmp_path):
    port = _closed_port()
    broker = make("never", host="127.0.0.1", port=port, ssl=True, ca_file=str(tmp_path / "no.pem"))
    with pytest.raises(ConfigError, match=r"brokers\.bus\.test\.ca_file: cannot read") as info:
        await broker.open()  # a ConnectionFailedError would mean it tried the closed port
    assert str(tmp_path / "no.pem") in str(info.value)


def test_the_context_built_from_the_options(tls):
    opts = RabbitMQBrokerOptions(
        ssl=True,
        ca_file=str(tls.ca),
        cert_file=str(tls.client_cert),
        key_file=str(tls.client_key),
    )
    ctx = client_context(opts, CONTEXT)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.cert_store_stats()["x509_ca"] == 1  # only the private CA: no system store


def test_tls_options_are_refused_where_they_could_not_apply():
    with pytest.raises(PydanticValidationError, match="TLS is off"):
        RabbitMQBrokerOptions(ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="TLS is off"):
        RabbitMQBrokerOptions(url="amqp://guest:guest@mq/", ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="not both"):
        RabbitMQBrokerOptions(url="amqps://mq/?cafile=/x.pem", ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="need cert_file"):
        RabbitMQBrokerOptions(ssl=True, key_file="client.key")
    opts = RabbitMQBrokerOptions(ssl=True, cert_file="c.pem", key_password="k3y-pa55")
    assert "k3y-pa55" not in repr(opts)
    RabbitMQBrokerOptions(url="amqps://guest:guest@mq/", ca_file="ca.pem")
