"""The nats broker over real TLS: private nats-servers with certificates of a private CA.

Checked: publish and subscribe with ``ca_file`` (``tls://`` URLs or ``tls: true``), a client
certificate, and the failures: no or another CA, a certificate for another host, a server
without TLS when TLS is on (refused, not used in clear), a missing file (``ConfigError`` before
connecting).
"""

from __future__ import annotations

import pytest
from ductwork.errors import ConfigError, ConnectionFailedError
from ductwork.providers import ProviderContext
from ductwork_nats.broker import NATSBroker
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="brokers.bus", env="test", provider="nats")


def make(servers: list[str], **options) -> NATSBroker:
    return NATSBroker.from_options(
        CONTEXT, servers=servers, storage="memory", connect_timeout=2, **options
    )


def tls_url(server) -> str:
    return server.url.replace("nats://", "tls://")


async def _round_trip(broker: NATSBroker) -> None:
    async with await broker.subscribe("tls.check", "g") as sub:
        await broker.publish("tls.check", b"over tls", key="k")
        delivery = await sub.receive(timeout=5)
        assert delivery is not None and delivery.message.body == b"over tls"
        await delivery.ack()


async def test_publish_and_subscribe_over_tls_with_the_private_ca(tls_nats, tls):
    server = tls_nats
    broker = make(
        [tls_url(server)], ca_file=str(tls.ca), user=server.user, password=server.password
    )
    async with broker:
        await _round_trip(broker)
    assert broker.endpoint == tls_url(server)


async def test_tls_true_with_a_nats_url(tls_nats, tls):
    server = tls_nats
    broker = make(
        [server.url], tls=True, ca_file=str(tls.ca), user=server.user, password=server.password
    )
    async with broker:
        await _round_trip(broker)


async def test_a_client_certificate(mutual_tls_nats, tls):
    options = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    async with make([tls_url(mutual_tls_nats)], ca_file=str(tls.ca), **options) as broker:
        await _round_trip(broker)


async def test_without_the_client_certificate_the_server_asks_for_it_fails(mutual_tls_nats, tls):
    broker = make([tls_url(mutual_tls_nats)], ca_file=str(tls.ca))
    # Usually "the server refused the client certificate"; with TLS 1.3 the refusal can come
    # after the client's handshake ended, and then it reads as a closed connection.
    with pytest.raises(ConnectionFailedError, match=f"cannot connect: .*:{mutual_tls_nats.port}"):
        await broker.open()
    await broker.close()


@pytest.mark.parametrize("trust", ["system store", "another CA"])
async def test_an_untrusted_certificate_fails_clearly_without_the_password(
    trust, tls_nats, tmp_path_factory
):
    options = {}
    if trust == "another CA":
        from ductwork.testing.tls import tls_files

        options["ca_file"] = str(tls_files(tmp_path_factory.mktemp("stranger")).ca)
    server = tls_nats
    broker = make([tls_url(server)], user=server.user, password=server.password, **options)
    with pytest.raises(ConnectionFailedError) as info:
        await broker.open()
    await broker.close()
    text = str(info.value)
    assert "certificate was not accepted" in text and "ca_file" in text
    assert server.password not in text and "brokers.bus" in text


async def test_a_certificate_for_another_host_fails_clearly(misnamed_tls_nats):
    server, files = misnamed_tls_nats
    broker = make([tls_url(server)], ca_file=str(files.ca))
    with pytest.raises(ConnectionFailedError, match="does not name the host"):
        await broker.open()
    await broker.close()


@pytest.mark.parametrize("how", ["tls: true", "tls:// url"])
async def test_a_server_without_tls_is_refused_not_used_in_clear(how, auth_nats):
    url = auth_nats.url if how == "tls: true" else auth_nats.url.replace("nats://", "tls://")
    options = {"tls": True} if how == "tls: true" else {}
    broker = make([url], user=auth_nats.user, password=auth_nats.password, **options)
    with pytest.raises(ConnectionFailedError, match="does not require TLS") as info:
        await broker.open()
    await broker.close()
    assert auth_nats.password not in str(info.value)


async def test_a_missing_ca_file_is_a_config_error_before_connecting(closed_port, tmp_path):
    broker = make([f"tls://127.0.0.1:{closed_port}"], ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match=r"brokers\.bus\.test\.ca_file: cannot read"):
        await broker.open()


def test_tls_files_without_tls_are_refused():
    with pytest.raises(PydanticValidationError, match="TLS is off"):
        NATSBroker.Options(servers=["nats://127.0.0.1:4222"], ca_file="ca.pem")
    NATSBroker.Options(servers=["tls://127.0.0.1:4222"], ca_file="ca.pem")
    NATSBroker.Options(tls=True, ca_file="ca.pem")
