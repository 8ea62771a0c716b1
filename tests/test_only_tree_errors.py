"""Whatever a caller passes, only errors from the ductwork tree come out of a namespace.

One property over the namespaces on the embedded providers (sample product): hostile keys,
values, headers, recipients and JSON, drawn by hypothesis, run against caches, storage, events,
databases and notifications. Each call either succeeds or raises a ``DuctworkError``; and an
embedded provider never needs the boundary's net (no "untranslated" ``ProviderError``).
"""

from __future__ import annotations

import re
import traceback
from typing import Any

import pytest
from ductwork import DuctworkError, ProviderError, ValidationError
from ductwork.providers import Attachment, Notification, Notifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Every code point, surrogates and controls included.
hostile_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)
line_breaks = st.sampled_from(["\r", "\n", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\x00"])
# Text that often carries a line break somewhere, as header injection would.
injected = st.builds(lambda a, b, c: f"{a}{b}{c}", hostile_text, line_breaks, hostile_text)
texts = st.one_of(hostile_text, injected, st.sampled_from(["", " ", "a@b.c", "not-an-email"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities too
    texts,
    st.builds(pow, st.just(10), st.just(5000)),  # past int-to-str's digit limit
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
not_json = st.one_of(st.builds(set), st.binary(max_size=8), st.builds(object), st.complex_numbers())
values = st.one_of(json_like, not_json, st.dictionaries(st.integers(), scalars, max_size=2))
headers = st.dictionaries(st.one_of(texts, st.integers()), st.one_of(texts, st.integers()))
recipients = st.one_of(texts, st.lists(texts, max_size=3))


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


async def _cache(dw: Any, draw: Any) -> None:
    key = draw(texts)
    op = draw(st.sampled_from(["set", "get", "incr", "raw", "delete", "exists"]))
    if op == "set":
        await dw.caches.set("hot", key, draw(values))
        await dw.caches.get("hot", key)
    elif op == "raw":  # a value written by another client: any bytes, then read back
        provider = await dw.provider("caches", "hot")
        await provider.set(f"{dw.product}:hot:{key}", draw(st.binary(max_size=16)))
        await dw.caches.get("hot", key)
    elif op == "incr":
        await dw.caches.incr("hot", key, draw(st.integers()))
    else:
        await getattr(dw.caches, op)("hot", key)


async def _storage(dw: Any, draw: Any) -> None:
    key = draw(texts)
    op = draw(st.sampled_from(["save", "read_file", "exists", "stat", "delete", "list"]))
    if op == "save":
        data = draw(st.one_of(texts, st.binary(max_size=16)))
        await dw.storage.save("files", key, data, metadata=draw(headers))
    elif op == "list":
        await dw.storage.list("files", key)
    else:
        await getattr(dw.storage, op)("files", key)


async def _events(dw: Any, draw: Any) -> None:
    event = draw(st.one_of(st.just("user_created"), texts))
    key = draw(st.one_of(st.none(), texts))
    await dw.events.publish("bus", event, draw(values), key=key, headers=draw(headers))


async def _databases(dw: Any, draw: Any) -> None:
    await dw.databases.action.execute("main", "create_users_table")
    op = draw(st.sampled_from(["add", "get", "raw"]))
    if op == "add":
        data = {"id": draw(st.integers()), "name": draw(texts), "email": draw(values)}
        await dw.databases.action.execute("main", "add_user", data)
    elif op == "get":
        await dw.databases.action.execute("main", "get_user", {"id": draw(values)})
    else:
        await dw.databases.execute("main", draw(texts), draw(st.dictionaries(texts, scalars)))


def _mostly(valid: Any, hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four: enough examples get past one field to the next."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), hostile)


async def _notifications(dw: Any, draw: Any) -> None:
    if draw(st.booleans()):
        to = draw(_mostly("Ada <ada@example.com>", recipients))
        await dw.notifications.send(
            "mail", "welcome", to=to, data={"name": draw(texts)}, subject=draw(_mostly(None, texts))
        )
        return
    provider = await dw.provider("notifications", "mail")
    assert isinstance(provider, Notifier)
    channel = draw(st.sampled_from(["email", "sms", "push", "callback"]))
    to = draw(_mostly("ada@example.com" if channel == "email" else "+15550100", recipients))
    file = draw(_mostly(Attachment("a.txt", b"x"), st.builds(Attachment, texts, st.just(b"x"))))
    note = Notification(
        channel=channel,
        to=[to] if isinstance(to, str) else to,
        subject=draw(_mostly("hi", st.one_of(st.none(), texts))),
        body=draw(texts),
        sender=draw(_mostly(None, texts)),
        headers=draw(_mostly({}, headers)),
        data=draw(st.dictionaries(st.one_of(texts, st.integers()), values, max_size=3)),
        attachments=[file],
    )
    await provider.send(note)


NAMESPACES = [_cache, _storage, _events, _databases, _notifications]


@pytest.fixture
async def shared_dw(tmp_path_factory: pytest.TempPathFactory):
    """One client for every example (hypothesis reruns the body, not the fixture)."""
    from ductwork.client import Ductwork
    from ductwork.config.loader import Config
    from ductwork.demo import sample_config

    root = tmp_path_factory.mktemp("tree")
    (root / "ductwork.yaml").write_text(sample_config())
    async with Ductwork(Config.load(root / "ductwork.yaml"), env="dev") as client:
        yield client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), calls=st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=4))
async def test_only_ductwork_errors_come_out(shared_dw, data, calls):
    for call in calls:
        await _expect_tree(call(shared_dw, data.draw))


async def test_values_too_deep_for_json_are_refused_as_validation_errors(shared_dw):
    deep = _deep(100_000)
    for call in (
        shared_dw.caches.set("hot", "deep", deep),
        shared_dw.events.publish("bus", "user_created", deep),
        shared_dw.events.dispatch("bus", "user_created", deep),
    ):
        with pytest.raises(ValidationError, match="JSON"):
            await call


async def _expect_tree(awaitable: Any) -> None:
    try:
        await awaitable
    except DuctworkError as exc:
        # An embedded provider translates its own errors: the boundary's net is for plugins.
        assert not (isinstance(exc, ProviderError) and "untranslated" in str(exc)), exc
    except BaseException as exc:  # pragma: no cover - the failure this test exists to find
        trace = "".join(traceback.format_exception(exc, limit=-4))
        pytest.fail(f"{type(exc).__module__}.{type(exc).__name__} escaped:\n{trace}")


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"x-trace": "a\r\nNats-Msg-Id: forged"}, "event headers['x-trace'] must be one line"),
        ({1: "v"}, "event headers[1]: a header name"),
        ({"x trace": "v"}, "event headers['x trace']: a header name"),
        ({"x-n": 5}, "event headers['x-n'] must be a string"),
    ],
)
async def test_event_headers_are_names_and_one_line_strings(shared_dw, headers, named):
    for call in (
        shared_dw.events.publish("bus", "user_created", {"id": 1}, headers=headers),
        shared_dw.events.dispatch("bus", "user_created", {"id": 1}, headers=headers),
    ):
        with pytest.raises(ValidationError, match=re.escape(named)):
            await call
    assert await shared_dw.jobs.list() == []
