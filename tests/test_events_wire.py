"""How ductwork reads the headers other services write: content types, names in any case."""

from __future__ import annotations

import asyncio
import json

import pytest
from ductwork.client import Ductwork
from ductwork.errors import ValidationError
from ductwork.processor.events import Event, is_json
from ductwork.providers.broker import header
from hypothesis import given
from hypothesis import strategies as st

from tests.test_events import fast_config

JSON_BODY = b'{"id": 1}'


def _spellings(name: str) -> st.SearchStrategy[str]:
    """``name`` with each letter in either case."""
    return st.tuples(*(st.sampled_from(sorted({c.lower(), c.upper()})) for c in name)).map("".join)


@given(name=_spellings("content-type"), media=_spellings("application/json"))
def test_json_is_decoded_whatever_the_case_of_the_header_and_type(name, media):
    event = Event("t", JSON_BODY, headers={name: media})
    assert event.data == {"id": 1}
    assert event.content_type == media
    assert event.header("CONTENT-TYPE") == media


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/cloudevents+json"],
)
def test_json_content_types_decode(content_type):
    assert is_json(content_type)
    assert Event("t", JSON_BODY, headers={"Content-Type": content_type}).data == {"id": 1}


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/octet-stream"])
def test_other_content_types_stay_bytes(content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    assert Event("t", JSON_BODY, headers=headers).data == JSON_BODY


def test_a_body_that_is_not_the_json_it_claims_is_a_validation_error():
    event = Event("orders", b"{nope", headers={"Content-Type": "application/json"}, id="7")
    with pytest.raises(ValidationError, match=r"event 7 on 'orders' .* not JSON"):
        _ = event.data


def test_an_exact_header_name_wins_over_another_spelling():
    assert header({"Content-Type": "a", "content-type": "b"}, "content-type") == "b"
    assert header({"X-Trace": "a"}, "x-trace") == "a"
    assert header({"X-Trace": "a"}, "x-other") is None


async def test_a_json_publish_replaces_the_callers_content_type_in_any_spelling(product_dir):
    async with Ductwork(fast_config(product_dir), env="dev") as dw:
        got: list[Event] = []
        ready = asyncio.Event()

        async def handler(event: Event) -> None:
            got.append(event)

        task = asyncio.create_task(
            dw.events.subscribe("bus", "user_created", handler, group="g", limit=2, ready=ready)
        )
        await ready.wait()
        headers = {"Content-Type": "text/plain", "trace": "abc"}
        await dw.events.publish("bus", "user_created", {"id": 1}, headers=headers)
        # bytes already encoded as JSON: the caller's content type says so
        await dw.events.publish("bus", "user_created", json.dumps([2]).encode(), headers=headers)
        assert await asyncio.wait_for(task, 10) == 2
    assert got[0].headers == {"content-type": "application/json", "trace": "abc"}
    assert got[0].data == {"id": 1}
    assert got[1].headers == headers
    assert got[1].data == b"[2]"
