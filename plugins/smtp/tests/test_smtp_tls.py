"""The smtp notifier over real TLS: STARTTLS and SMTPS servers with a private CA (trustme).

A missing or untrusted CA, or a certificate for another host, fails the connection with
:class:`ConnectionFailedError` saying why (never :class:`AuthenticationError`: the credentials
were not even sent); a TLS file that cannot be read is a :class:`ConfigError` before connecting.
"""

from __future__ import annotations

import uuid

import pytest
from ductwork.errors import ConfigError, ConnectionFailedError
from ductwork.providers import ProviderContext
from ductwork.providers.notifier import Notification
from ductwork_smtp.notifier import SMTPNotifier
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="notifiers.mail", env="test", provider="smtp")
AUTH_WITHOUT_TLS = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def make(port: int, context: ProviderContext = CONTEXT, **options) -> SMTPNotifier:
    return SMTPNotifier.from_options(context, host="127.0.0.1", port=port, timeout=5, **options)


def _note(marker: str) -> Notification:
    return Notification(channel="email", to=["ada@example.com"], subject=marker, body="hi")


def _received(server, marker):
    return [n for n in server.recorder.notifications() if n.subject == marker]


async def test_starttls_with_the_private_ca_authenticates_and_sends(starttls_server, tls):
    server, marker = starttls_server, uuid.uuid4().hex
    async with make(
        server.port,
        starttls=True,
        ca_file=str(tls.ca),
        username=server.user,
        password=server.password,
    ) as notifier:
        await notifier.ping()
        await notifier.send(_note(marker))
    assert len(_received(server, marker)) == 1


async def test_offered_starttls_is_taken_and_verified_when_starttls_is_unset(starttls_server, tls):
    server, marker = starttls_server, uuid.uuid4().hex
    notifier = make(
        server.port, ca_file=str(tls.ca), username=server.user, password=server.password
    )
    async with notifier:
        await notifier.send(_note(marker))
    assert len(_received(server, marker)) == 1


async def test_a_relative_ca_file_resolves_against_the_config_folder(starttls_server, tls):
    server, marker = starttls_server, uuid.uuid4().hex
    context = ProviderContext(
        resource="notifiers.mail", env="test", provider="smtp", root=tls.folder
    )
    options = {"username": server.user, "password": server.password}
    async with make(server.port, context, starttls=True, ca_file="ca.pem", **options) as notifier:
        await notifier.send(_note(marker))
    assert len(_received(server, marker)) == 1


@AUTH_WITHOUT_TLS
async def test_smtps_with_the_private_ca_authenticates_and_sends(smtps_server, tls):
    server, marker = smtps_server, uuid.uuid4().hex
    async with make(
        server.port,
        use_tls=True,
        ca_file=str(tls.ca),
        username=server.user,
        password=server.password,
    ) as notifier:
        await notifier.send(_note(marker))
    assert len(_received(server, marker)) == 1
    assert notifier.endpoint == f"smtps://127.0.0.1:{server.port}"


async def test_smtps_with_a_client_certificate(mutual_tls_server, tls):
    server, marker = mutual_tls_server, uuid.uuid4().hex
    options = {"cert_file": str(tls.client_cert), "key_file": str(tls.client_key)}
    async with make(server.port, use_tls=True, ca_file=str(tls.ca), **options) as notifier:
        await notifier.send(_note(marker))
    assert len(_received(server, marker)) == 1


async def test_smtps_without_the_client_certificate_it_asks_for_fails(mutual_tls_server, tls):
    notifier = make(mutual_tls_server.port, use_tls=True, ca_file=str(tls.ca))
    # With TLS 1.3 the server refuses after the handshake: the client sees the connection
    # closed, so the error says that (it cannot know why), as a ConnectionFailedError.
    with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{mutual_tls_server.port}"):
        await notifier.open()
        await notifier.send(_note("never"))
    await notifier.close()


@AUTH_WITHOUT_TLS
@pytest.mark.parametrize("mode", ["starttls", "smtps"])
@pytest.mark.parametrize("trust", ["system store", "another CA"])
async def test_an_untrusted_certificate_fails_clearly_without_the_password(
    mode, trust, request, stranger_tls
):
    server = request.getfixturevalue("starttls_server" if mode == "starttls" else "smtps_server")
    options = {"starttls": True} if mode == "starttls" else {"use_tls": True}
    if trust == "another CA":
        options["ca_file"] = str(stranger_tls.ca)
    notifier = make(server.port, username=server.user, password=server.password, **options)
    with pytest.raises(ConnectionFailedError) as info:
        await notifier.open()
    await notifier.close()
    text = str(info.value)
    assert "certificate was not accepted" in text and "ca_file" in text
    assert server.password not in text and server.password not in repr(info.value.__cause__)
    assert "notifiers.mail" in text and f":{server.port}" in text


async def test_a_certificate_for_another_host_fails_clearly(misnamed_server, misnamed_tls):
    notifier = make(misnamed_server.port, starttls=True, ca_file=str(misnamed_tls.ca))
    with pytest.raises(ConnectionFailedError) as info:
        await notifier.open()
    await notifier.close()
    assert "does not name the host" in str(info.value)
    assert "127.0.0.1" in str(info.value)


async def test_validate_certs_false_is_the_explicit_opt_out(misnamed_server):
    marker = uuid.uuid4().hex
    async with make(misnamed_server.port, starttls=True, validate_certs=False) as notifier:
        await notifier.send(_note(marker))
    assert len(_received(misnamed_server, marker)) == 1


async def test_a_missing_ca_file_is_a_config_error_before_connecting(closed_port, tmp_path):
    notifier = make(closed_port, starttls=True, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError) as info:
        await notifier.open()  # a ConnectionFailedError would mean it tried the closed port
    text = str(info.value)
    assert str(tmp_path / "nope.pem") in text and "ca_file" in text
    assert "notifiers.mail.test.ca_file" in text and "cannot read" in text


async def test_a_ca_file_that_is_not_pem_is_a_config_error(closed_port, tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    notifier = make(closed_port, use_tls=True, ca_file=str(bogus))
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        await notifier.open()


def test_tls_options_are_refused_where_they_could_not_apply():
    with pytest.raises(PydanticValidationError, match="TLS is off"):
        SMTPNotifier.Options(starttls=False, ca_file="ca.pem")
    with pytest.raises(PydanticValidationError, match="validate_certs"):
        SMTPNotifier.Options(use_tls=True, ca_file="ca.pem", validate_certs=False)
    with pytest.raises(PydanticValidationError, match="need cert_file"):
        SMTPNotifier.Options(use_tls=True, key_file="client.key")
    options = SMTPNotifier.Options(
        use_tls=True, cert_file="c.pem", key_file="c.key", key_password="k3y-pa55"
    )
    assert "k3y-pa55" not in repr(options) and "k3y-pa55" not in str(options)
