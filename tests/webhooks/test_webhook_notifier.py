"""The webhook notifier against a real receiver that verifies with ``standardwebhooks``."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid

import httpcore
import httpx
import pytest
from ductwork.builtin._targets import CheckedBackend, blocked
from ductwork.builtin.webhook import WebhookNotifier
from ductwork.errors import (
    ConfigError,
    ConnectionFailedError,
    HTTPStatusError,
    ProviderError,
    UnsupportedError,
    ValidationError,
)
from ductwork.providers.base import ProviderContext
from ductwork.providers.notifier import Notification, retryable
from ductwork.testing import NotifierSuite
from ductwork.testing.servers import free_port
from ductwork.webhooks import generate_secret, sign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import HOOKS_HOST, SECRET, Receiver


def ctx(tmp_path):
    return ProviderContext(
        resource="notifications.hooks", env="dev", provider="webhook", root=tmp_path
    )


def note(*to: str, **fields):
    return Notification(channel="callback", to=list(to), **fields)


@pytest.fixture
async def hooks(tmp_path):
    async with WebhookNotifier.from_options(ctx(tmp_path), secret=SECRET, allow_private=True) as p:
        yield p


async def test_every_delivery_verifies_with_standardwebhooks(hooks, receiver: Receiver):
    marker = uuid.uuid4().hex
    receipt = await hooks.send(
        note(
            f"{receiver.url}/a",
            f"{receiver.url}/b?x=1",
            subject="order.paid",
            body=marker,
            data={"order": 7, "marker": marker},
        )
    )
    assert receipt.channel == "callback" and receipt.id
    assert receiver.state.rejected == []
    got = sorted(receiver.state.deliveries, key=lambda d: d.path)
    assert [d.path for d in got] == ["/a", "/b"]
    for d in got:
        assert d.payload["type"] == "order.paid"
        assert d.payload["message"] == marker
        assert d.payload["data"] == {"order": 7, "marker": marker}
        assert d.headers["webhook-id"] == d.payload["id"] == receipt.id
        assert d.headers["content-type"] == "application/json"
        assert abs(int(d.headers["webhook-timestamp"]) - time.time()) < 60


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.dictionaries(st.text(), _json, max_size=4),
    text=st.text(),
    subject=st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1),
)
async def test_any_json_data_and_text_arrive_verified(
    hooks, receiver: Receiver, data, text, subject
):
    receiver.state.reset()
    await hooks.send(note(f"{receiver.url}/any", subject=subject, body=text, data=data))
    [got] = receiver.state.deliveries
    assert got.payload["data"] == data and got.payload["message"] == text
    assert got.payload["type"] == subject
    assert receiver.state.rejected == []


async def test_tampered_and_replayed_deliveries_are_rejected(hooks, receiver: Receiver):
    await hooks.send(note(f"{receiver.url}/orig", body="genuine"))
    [genuine] = receiver.state.deliveries
    signed = {k: v for k, v in genuine.headers.items() if k.startswith("webhook-")}
    async with httpx.AsyncClient() as client:
        tampered = genuine.body.replace(b"genuine", b"tampered")
        r = await client.post(f"{receiver.url}/tampered", content=tampered, headers=signed)
        assert r.status_code == 400
        old = int(time.time()) - 3600  # a delivery captured an hour ago, sent again
        replay = {
            **signed,
            "webhook-timestamp": str(old),
            "webhook-signature": sign(signed["webhook-id"], old, genuine.body, SECRET),
        }
        r = await client.post(f"{receiver.url}/replayed", content=genuine.body, headers=replay)
        assert r.status_code == 400
    assert [path for path, _ in receiver.state.rejected] == ["/tampered", "/replayed"]
    assert "too old" in receiver.state.rejected[1][1]


async def test_the_same_key_gives_the_same_webhook_id(hooks, receiver: Receiver):
    for path in ("/one", "/two"):
        await hooks.send(note(f"{receiver.url}{path}", idempotency_key="run-1:step"))
    first, second = receiver.state.deliveries
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    keyless = note(f"{receiver.url}/three")
    assert keyless.message_id() == keyless.message_id()  # a retry of this object keeps it


async def test_rotation_signs_with_every_secret(tmp_path, receiver: Receiver):
    new = generate_secret()
    async with WebhookNotifier.from_options(
        ctx(tmp_path), secret=[SECRET, new], allow_private=True
    ) as p:
        receiver.state.secret = new  # the receiver already moved to the new secret
        await p.send(note(f"{receiver.url}/rotated"))
    [got] = receiver.state.deliveries
    assert len(got.headers["webhook-signature"].split()) == 2


async def test_status_and_connection_errors_follow_the_contract(hooks, receiver: Receiver):
    with pytest.raises(HTTPStatusError) as caught:
        await hooks.send(note(f"{receiver.url}/limited?fail=1&code=429&retry_after=7"))
    assert caught.value.status == 429 and caught.value.retry_after == "7"
    with pytest.raises(ConnectionFailedError):
        await hooks.send(note(f"http://127.0.0.1:{free_port()}/nobody"))
    with pytest.raises(ProviderError, match="do not follow redirects") as redirected:
        await hooks.send(note(f"{receiver.url}/moved?fail=1&code=302"))
    assert not retryable(redirected.value)


async def test_suite_recipient_over_tls(tmp_path, receiver: Receiver):
    async with _suite_notifier(tmp_path, receiver) as p:
        await p.send(note(f"https://{HOOKS_HOST}/in", body="over tls"))
    [got] = receiver.state.deliveries
    assert got.url == f"https://{HOOKS_HOST}/in" and got.payload["message"] == "over tls"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "example.com/in", "https:///in", "http://[::1"],
)
async def test_non_http_urls_are_refused_naming_the_recipient(hooks, url):
    with pytest.raises(ValidationError, match=r"'to'\[1\]"):
        await hooks.send(note("https://example.com/ok", url))


_private_v4 = st.one_of(
    st.integers(0, 2**24 - 1).map(lambda n: ipaddress.IPv4Address((127 << 24) + n)),
    st.integers(0, 2**24 - 1).map(lambda n: ipaddress.IPv4Address((10 << 24) + n)),
    st.integers(0, 2**20 - 1).map(lambda n: ipaddress.IPv4Address((172 << 24) + (16 << 16) + n)),
    st.integers(0, 2**16 - 1).map(lambda n: ipaddress.IPv4Address((192 << 24) + (168 << 16) + n)),
    st.integers(0, 2**16 - 1).map(lambda n: ipaddress.IPv4Address((169 << 24) + (254 << 16) + n)),
    st.integers(0, 2**28 - 1).map(lambda n: ipaddress.IPv4Address((224 << 24) + n)),
    st.just(ipaddress.IPv4Address("0.0.0.0")),
)
_private_v6 = st.one_of(
    st.just(ipaddress.IPv6Address("::1")),
    st.just(ipaddress.IPv6Address("::")),
    st.integers(0, 2**121 - 1).map(lambda n: ipaddress.IPv6Address((0xFC << 120) + n)),
    st.integers(0, 2**118 - 1).map(lambda n: ipaddress.IPv6Address((0xFE80 << 112) + n)),
    st.integers(0, 2**112 - 1).map(lambda n: ipaddress.IPv6Address((0xFF00 << 112) + n)),
    _private_v4.map(lambda v4: ipaddress.IPv6Address(f"::ffff:{v4}")),
)


def _url(ip) -> str:
    return f"http://[{ip}]:8080/in" if ip.version == 6 else f"http://{ip}/in"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ip=st.one_of(_private_v4, _private_v6))
async def test_private_targets_are_refused_before_anything_is_sent(tmp_path, ip):
    assert blocked(ip) is not None
    connects: list[tuple[str, int]] = []

    class Recording(WebhookNotifier):
        def _backend(self):
            return _Recording(connects)

    async with Recording.from_options(ctx(tmp_path), secret=SECRET) as p:
        with pytest.raises(ValidationError, match=r"'to'\[1\].*public addresses only"):
            # the first recipient is public: nothing is sent to it either
            await p.send(note("http://8.8.8.8/in", _url(ip)))
    assert connects == []


class _Recording(httpcore.AsyncNetworkBackend):
    def __init__(self, connects):
        self.connects = connects

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append((host, port))
        raise httpcore.ConnectError("recorded, not connected")


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:0808:0808::1"],
)
def test_public_addresses_are_allowed(address):
    assert blocked(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1", "127.1"])
async def test_names_resolving_to_loopback_are_refused(tmp_path, host):
    async with WebhookNotifier.from_options(ctx(tmp_path), secret=SECRET) as p:
        with pytest.raises(ValidationError, match=r"'to'\[0\].*resolves to"):
            await p.send(note(f"http://{host}:{free_port()}/in"))


async def test_only_the_callback_channel(hooks):
    with pytest.raises(UnsupportedError):
        await hooks.send(Notification(channel="email", to=["ada@example.com"], body="x"))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"secret": "not-whsec"}, "whsec_"),
        ({"secret": "whsec_%%%"}, "base64"),
        ({"secret": "whsec_" + "QUFB"}, "24 to 64"),
        ({"secret": []}, "at least one"),
        ({"secret": SECRET, "headers": {"webhook-id": "x"}}, "webhook-id"),
        ({"secret": SECRET, "headers": {"X-Bad": "a\r\nb"}}, "X-Bad"),
    ],
)
def test_bad_options_are_refused_without_showing_the_secret(tmp_path, options, named):
    from ductwork.config.loader import Config

    raw = {
        "product": "shop",
        "environments": ["dev"],
        "notifications": {"hooks": {"dev": {"provider": "webhook", **options}}},
    }
    with pytest.raises(ConfigError, match=named) as caught:
        Config.from_dict(raw, root=tmp_path).resolve("notifications", "hooks", "dev")
    assert SECRET not in str(caught.value)


async def test_secrets_are_redacted_from_errors_and_reprs(tmp_path, receiver: Receiver):
    async with WebhookNotifier.from_options(ctx(tmp_path), secret=SECRET, allow_private=True) as p:
        assert SECRET not in repr(p.options)
        with pytest.raises(HTTPStatusError) as caught:
            await p.send(note(f"{receiver.url}/x?fail=1&code=400", body=SECRET))
    assert SECRET not in str(caught.value)
    assert json.loads(receiver.state.deliveries[0].body)["message"] == SECRET  # sent as asked


class _ToReceiver(httpcore.AsyncNetworkBackend):
    """hooks.example.com:443 is the TLS receiver on loopback (the fixture's DNS)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        assert (host, port) == (HOOKS_HOST, 443)
        return await self._inner.connect_tcp("127.0.0.1", self._port, timeout, local_address)

    async def sleep(self, seconds):
        await self._inner.sleep(seconds)


def _suite_notifier(tmp_path, receiver: Receiver) -> WebhookNotifier:
    class Routed(WebhookNotifier):
        def _backend(self):
            return _ToReceiver(receiver.tls_port)

    return Routed.from_options(
        ctx(tmp_path), secret=SECRET, allow_private=True, ca_file=receiver.ca_file
    )


class TestWebhookNotifier(NotifierSuite):
    @pytest.fixture
    async def provider(self, tmp_path, receiver):
        async with _suite_notifier(tmp_path, receiver) as p:
            yield p

    @pytest.fixture
    def outbox(self, receiver):
        async def read():
            return [
                Notification(
                    channel="callback",
                    to=[d.url],
                    subject=d.payload["type"],
                    body=d.payload["message"],
                    data=d.payload["data"],
                )
                for d in receiver.state.deliveries
            ]

        return read


async def test_connections_go_only_to_the_checked_addresses(receiver: Receiver):
    port = int(receiver.url.rsplit(":", 1)[1])
    asked: list[tuple[str, int]] = []

    async def checked(host, port):
        asked.append((host, port))
        if host == "evil.test":
            raise ValidationError("notification field 'to': evil.test resolves to 10.0.0.1")
        return ["127.0.0.1"]  # what the check resolved; no second lookup happens

    async with httpcore.AsyncConnectionPool(network_backend=CheckedBackend(checked)) as pool:
        # "rebind.test" does not resolve at all: the connection uses the checked address
        response = await pool.request("POST", f"http://rebind.test:{port}/ok", content=b"{}")
        assert response.status == 400  # reached the receiver (unsigned, so refused there)
        with pytest.raises(ValidationError, match=r"evil\.test"):
            await pool.request("POST", f"http://evil.test:{port}/no", content=b"{}")
    assert asked == [("rebind.test", port), ("evil.test", port)]
    assert [path for path, _ in receiver.state.rejected] == ["/ok"]


async def test_credentials_in_a_url_are_refused(hooks):
    with pytest.raises(ValidationError, match="credentials"):
        await hooks.send(note("https://user:pw@hooks.example.com/in"))
