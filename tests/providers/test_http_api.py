"""The HTTP API notifiers' shared pieces: what ``settle`` turns refusals into, ``Accepted``."""

from __future__ import annotations

import pytest
from ductwork.errors import (
    AuthenticationError,
    HTTPStatusError,
    NotFoundError,
    ProviderError,
    ValidationError,
)
from ductwork.providers import ProviderContext
from ductwork.providers.http_api import Accepted, APINotifier, APIOptions, Refusal, settle
from ductwork.providers.notifier import Notification, Receipt


class _Options(APIOptions):
    base_url: str = "http://127.0.0.1:9"


class _Notifier(APINotifier[_Options]):
    async def deliver(self, notification: Notification) -> Receipt:
        raise NotImplementedError


PROVIDER = _Notifier(_Options(), context=ProviderContext(resource="notifications.n", provider="x"))
NOTE = Notification(channel="push", to=["a", "b", "c"], idempotency_key="run:1")


def test_everything_accepted_is_the_receipt_in_to_order():
    receipt = settle(PROVIDER, NOTE, {"c": "3", "a": "1", "b": "2"}, [])
    assert (receipt.id, receipt.to, receipt.provider_ids) == ("run:1", NOTE.to, ["1", "2", "3"])


def test_a_retryable_refusal_wins_and_prefers_429():
    refused = [
        Refusal("b", "retry", "UNAVAILABLE", status=503),
        Refusal("c", "retry", "Q", status=429, retry_after="4"),
    ]
    with pytest.raises(HTTPStatusError) as caught:
        settle(PROVIDER, NOTE, {"a": "1"}, [*refused, Refusal("a", "gone", "GONE")])
    assert (caught.value.status, caught.value.retry_after) == (429, "4")
    assert "accepted by 1 other" in str(caught.value)


def test_refusals_for_good_with_others_accepted_give_the_accepted():
    receipt = settle(
        PROVIDER, NOTE, {"a": "1"}, [Refusal("b", "gone", "G"), Refusal("c", "invalid", "I")]
    )
    assert receipt.to == ["a"]


@pytest.mark.parametrize(
    ("kinds", "error"),
    [
        (["gone", "gone"], NotFoundError),
        (["gone", "invalid"], ValidationError),
        (["invalid", "failed"], ProviderError),
        (["failed", "auth"], AuthenticationError),
    ],
)
def test_nothing_accepted_raises_the_most_telling_error(kinds, error):
    refused = [Refusal(to, kind, kind.upper()) for to, kind in zip(["a", "b"], kinds, strict=True)]
    with pytest.raises(error, match=r"'a': .*'b': "):
        settle(PROVIDER, NOTE, {}, refused)


def test_accepted_is_bounded_by_notifications_and_recipients():
    memory: Accepted[str] = Accepted(keep=2, targets=4)
    memory.add("k1", {"a": "1", "b": "2"})
    memory.add("k2", {"c": "3"})
    memory.add("k1", {"a": "1"})  # counted once
    assert memory.done("k1") == {"a": "1", "b": "2"} and memory.done(None) == {}
    memory.add("k3", {"d": "4", "e": "5"})  # 3 notifications, 5 recipients: the oldest goes
    assert memory.done("k2") == {} and memory.done("k1") and memory.done("k3")
    memory.add("k4", {str(i): "" for i in range(9)})  # alone over the bound: kept alone
    assert [memory.done(k) for k in ("k1", "k3")] == [{}, {}] and len(memory.done("k4")) == 9


async def test_the_client_is_there_only_while_open():
    with pytest.raises(ProviderError, match="not open"):
        PROVIDER.api  # noqa: B018 - the property raises
    async with PROVIDER:
        assert PROVIDER.native is PROVIDER.api.http
    with pytest.raises(ProviderError, match="not open"):
        PROVIDER.api  # noqa: B018 - the property raises
