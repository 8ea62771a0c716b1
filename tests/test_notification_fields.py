"""``dw.notifications`` refuses unsafe fields with a ValidationError naming the field, first.

Checked after rendering (a template's data can carry the line break) and before any side
effect: nothing is written to the mailbox and no job is queued.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ductwork import ValidationError


def _outbox(product_dir: Path) -> list[Path]:
    folder = product_dir / ".ductwork" / "outbox"
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"to": "ada@example.com", "data": {"name": "Ada\r\nBcc: eve@example.com"}}, "'subject'"),
        ({"to": "ada@example.com", "subject": "Hi\nBcc: eve@example.com"}, "'subject'"),
        ({"to": "ada@example.com\r\nBcc: eve@example.com"}, "'to'[0]"),
        ({"to": "not-an-email"}, "'to'[0]"),
        ({"to": ""}, "'to'[0]"),
        ({"to": ["ada@example.com", "not-an-email"]}, "'to'[1]"),
        ({"to": []}, "'to'"),
        ({"to": 5}, "'to'"),
        ({"to": [b"ada@example.com"]}, "'to'"),
    ],
)
async def test_send_refuses_unsafe_fields_naming_them_and_writes_nothing(
    dw, product_dir, kwargs, named
):
    kwargs.setdefault("data", {"name": "Ada"})
    with pytest.raises(ValidationError, match=re.escape(f"field {named}")):
        await dw.notifications.send("mail", "welcome", **kwargs)
    assert _outbox(product_dir) == []


async def test_dispatch_refuses_them_before_queueing_a_job(dw, product_dir):
    with pytest.raises(ValidationError, match="field 'subject'"):
        await dw.notifications.dispatch(
            "mail", "welcome", to="ada@example.com", data={"name": "Ada\r\nBcc: eve@example.com"}
        )
    with pytest.raises(ValidationError, match="field 'to'\\[0\\] is not an email address"):
        await dw.notifications.dispatch("mail", "welcome", to="not-an-email", data={"name": "A"})
    assert await dw.jobs.list() == []
    assert _outbox(product_dir) == []


async def test_a_safe_message_still_goes_out(dw, product_dir):
    receipt = await dw.notifications.send(
        "mail", "welcome", to="Ada Lovelace <ada@example.com>", data={"name": "Ada\tL."}
    )
    assert receipt.to == ["Ada Lovelace <ada@example.com>"]
    assert len(_outbox(product_dir)) == 1
