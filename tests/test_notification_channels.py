"""Recipients checked per channel, channel limits, and email attachments read from storage.

All refused before any side effect: nothing reaches the mailbox, no job is queued.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ductwork import ConfigError, InvalidKeyError, NotFoundError, ValidationError
from ductwork.builtin.mailbox import read_outbox
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.demo import sample_config
from ductwork.providers.channels import Limits, sms_segments
from ductwork.providers.notifier import Attachment, Notification, check_notification
from hypothesis import given
from hypothesis import strategies as st

# GSM 03.38's basic table (one septet each) and its extension table (two)
GSM = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = "^{}\\[~]|€\f"
INVOICE = {
    "email": {
        "subject": "Invoice {{ order.id }}",
        "body": "Attached.",
        "attachments": [
            {
                "storage": "files",
                "key": "invoices/{{ order.id }}.pdf",
                "filename": "invoice-{{ order.id }}.pdf",
            }
        ],
    }
}


def _raw(messages: dict[str, Any] | None = None, **mail: Any) -> dict[str, Any]:
    raw = yaml.safe_load(sample_config())
    raw["notifications"]["mail"]["messages"].update(messages or {})
    raw["notifications"]["mail"].update(mail)
    return raw


def _client(tmp_path: Path, messages: dict[str, Any] | None = None, **mail: Any) -> Ductwork:
    return Ductwork(Config.from_dict(_raw(messages, **mail), root=tmp_path), env="dev")


def _outbox(tmp_path: Path) -> list[Notification]:
    folder = tmp_path / ".ductwork" / "outbox"
    return read_outbox(folder) if folder.exists() else []


# -- recipients ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "to", "named", "why"),
    [
        ("email", ["ada@example.com", "ada@@example.com"], "'to'[1]", "not an email address"),
        ("email", ["ada..x@example.com"], "'to'[0]", "two periods"),
        ("email", ["Ada <ada@exa mple.com>"], "'to'[0]", "not an email address"),
        ("sms", ["+14155550100", "4155550100"], "'to'[1]", "E.164"),
        ("sms", ["+1 415 555 0100"], "'to'[0]", "E.164"),
        ("sms", ["+0123456789"], "'to'[0]", "E.164"),
        ("sms", ["+999123456789"], "'to'[0]", "E.164"),
        ("callback", ["ftp://example.com/in"], "'to'[0]", "http:// or https://"),
        ("callback", ["https:///no-host"], "'to'[0]", "with a host"),
        ("callback", ["example.com/in"], "'to'[0]", "http:// or https://"),
    ],
)
def test_recipients_are_checked_per_channel_naming_field_and_index(channel, to, named, why):
    note = Notification(channel=channel, to=to, body="x")
    with pytest.raises(ValidationError, match=re.escape(named)) as info:
        check_notification(note)
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("channel", "to"),
    [
        ("email", ["Ada Lovelace <ada@example.com>", "ops@intranet", "x@mail.test"]),
        ("sms", ["+14155550100", "+447700900123", "+33612345678"]),
        ("callback", ["https://hooks.example.com/in?x=1", "http://127.0.0.1:8080/hook"]),
        ("push", ["ExponentPushToken[xxxxxxxx]"]),
    ],
)
def test_good_recipients_pass(channel, to):
    check_notification(Notification(channel=channel, to=to, body="x"))


def test_a_url_with_a_password_is_not_repeated_in_the_error():
    with pytest.raises(ValidationError) as info:
        check_notification(Notification("callback", ["ftp://u:hunter22@example.com/"], body="x"))
    assert "hunter22" not in str(info.value)


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # two septets each
        ("€" * 81, ("GSM-7", 2)),
        ("a" * 152 + "€", ("GSM-7", 1)),  # 154 septets: one segment still
        ("a" * 159 + "€", ("GSM-7", 2)),  # 161 septets; the escape pair is not split
        ("ж" * 70, ("UCS-2", 1)),
        ("ж" * 71, ("UCS-2", 2)),
        ("a" * 100 + "😀", ("UCS-2", 2)),  # 102 UTF-16 units
        ("😀" * 35, ("UCS-2", 1)),
    ],
)
def test_sms_segments_follow_gsm7_and_ucs2(text, expected):
    assert sms_segments(text) == expected


@given(st.text(alphabet=st.sampled_from(GSM), max_size=1000))
def test_gsm7_segments_match_the_formula(text):
    encoding, segments = sms_segments(text)
    assert encoding == "GSM-7"
    assert segments == (1 if len(text) <= 160 else -(-len(text) // 153))


@given(st.text(min_size=1, max_size=400))
def test_any_text_outside_gsm7_is_ucs2_and_its_segments_hold_it(text):
    encoding, segments = sms_segments(text)
    if any(c not in GSM + GSM_EXTENDED for c in text):
        assert encoding == "UCS-2"
        units = len(text.encode("utf-16-le")) // 2
        assert segments == 1 if units <= 70 else -(-units // 67) <= segments <= -(-units // 66)
    else:
        assert encoding == "GSM-7"


def test_an_sms_over_its_segments_is_refused_naming_body_and_limit():
    long = Notification(channel="sms", to=["+14155550100"], body="a" * (153 * 10 + 1))
    with pytest.raises(ValidationError, match=r"'body' needs 11 SMS segments .*limit is 10"):
        check_notification(long)
    check_notification(long, Limits(sms_max_segments=11))
    with pytest.raises(ValidationError, match="UCS-2"):
        check_notification(Notification("sms", ["+14155550100"], body="ж" * 71), Limits(1))


def test_a_push_payload_over_its_bytes_is_refused():
    note = Notification(channel="push", to=["tok"], subject="t", body="b", data={"x": "é" * 2100})
    with pytest.raises(ValidationError, match=r"push payload of \d+ bytes; the limit is 4096"):
        check_notification(note)
    check_notification(note, Limits(push_max_bytes=8192))


def test_an_attachment_over_its_size_is_refused():
    note = Notification(
        "email", ["ada@example.com"], body="x", attachments=[Attachment("a.bin", b"x" * 2048)]
    )
    with pytest.raises(ValidationError, match=r"'attachments'\[0\] \('a.bin'\) is 2.0 KiB"):
        check_notification(note, Limits(max_attachment_size=1024))


async def test_configured_limits_apply_to_send_and_dispatch_before_anything(tmp_path):
    sms = {"code": {"sms": {"body": "Your code is {{ code }}"}}}
    async with _client(tmp_path, sms, limits={"sms_max_segments": 1}) as dw:
        data = {"code": "1" * 200}
        with pytest.raises(ValidationError, match="limit is 1"):
            await dw.notifications.send("mail", "code", to="+14155550100", data=data)
        with pytest.raises(ValidationError, match="limit is 1"):
            await dw.notifications.dispatch("mail", "code", to="+14155550100", data=data)
        assert await dw.jobs.list() == []
        await dw.notifications.send("mail", "code", to="+14155550100", data={"code": "42"})
    assert [n.body for n in _outbox(tmp_path)] == ["Your code is 42"]


def test_limits_are_typed_in_config(tmp_path):
    config = Config.from_dict(_raw(limits={"max_attachment_size": "2MiB"}), root=tmp_path)
    assert config.product.notifications["mail"].limits.max_attachment_size == 2 * 1024 * 1024
    with pytest.raises(ConfigError, match="sms_max_segments"):
        Config.from_dict(_raw(limits={"sms_max_segments": 0}), root=tmp_path)
    with pytest.raises(ConfigError, match="limits"):
        Config.from_dict(_raw(limits={"sms_segments": 3}), root=tmp_path)


# -- attachments from storage ------------------------------------------------------------------


async def test_a_configured_attachment_is_read_from_storage_and_sent(tmp_path):
    async with _client(tmp_path, {"invoice": INVOICE}) as dw:
        await dw.storage.save("files", "invoices/7.pdf", b"%PDF-1.4 seven")
        await dw.notifications.send(
            "mail", "invoice", to="ada@example.com", data={"order": {"id": 7}}
        )
    [sent] = _outbox(tmp_path)
    assert [(a.filename, a.content) for a in sent.attachments] == [
        ("invoice-7.pdf", b"%PDF-1.4 seven")
    ]
    assert sent.attachments[0].content_type == "application/pdf"


async def test_an_attachment_over_the_limit_is_refused_naming_storage_key_size_and_limit(
    tmp_path,
):
    async with _client(tmp_path, {"invoice": INVOICE}, limits={"max_attachment_size": 1000}) as dw:
        await dw.storage.save("files", "invoices/8.pdf", b"x" * 1001)
        with pytest.raises(ValidationError) as info:
            await dw.notifications.send(
                "mail", "invoice", to="ada@example.com", data={"order": {"id": 8}}
            )
        [entry] = await dw.notifications.log(status="failed")
    text = str(info.value)
    for part in ("'files'", "'invoices/8.pdf'", "1001 bytes", "limit is 1000 bytes"):
        assert part in text
    assert _outbox(tmp_path) == []
    assert entry.error is not None and "limit is 1000 bytes" in entry.error


async def test_a_missing_attachment_fails_before_sending(tmp_path):
    async with _client(tmp_path, {"invoice": INVOICE}) as dw:
        with pytest.raises(NotFoundError, match=r"invoices/9\.pdf"):
            await dw.notifications.send(
                "mail", "invoice", to="ada@example.com", data={"order": {"id": 9}}
            )
    assert _outbox(tmp_path) == []


@pytest.mark.parametrize("order_id", ["../../etc/passwd", "/abs", "a/../../b", "x\\y"])
async def test_a_key_that_would_leave_the_storage_root_is_refused_before_anything(
    tmp_path, order_id
):
    async with _client(tmp_path, {"invoice": INVOICE}) as dw:
        with pytest.raises(InvalidKeyError, match=r"mail:invoice\.attachments\[0\]\.key"):
            await dw.notifications.send(
                "mail", "invoice", to="ada@example.com", data={"order": {"id": order_id}}
            )
        with pytest.raises(InvalidKeyError):
            await dw.notifications.dispatch(
                "mail", "invoice", to="ada@example.com", data={"order": {"id": order_id}}
            )
        assert await dw.jobs.list() == []
        assert await dw.notifications.log() == []


async def test_a_dispatched_message_reads_its_attachment_when_it_runs(tmp_path):
    from ductwork.engine.worker import Worker

    async with _client(tmp_path, {"invoice": INVOICE}) as dw:
        job = await dw.notifications.dispatch(
            "mail", "invoice", to="ada@example.com", data={"order": {"id": 11}}
        )
        await dw.storage.save("files", "invoices/11.pdf", b"later")  # stored after dispatch
        worker = Worker(dw, await dw.jobs.store(), poll_interval=0.02, burst=True)
        await worker.serve()
        assert (await dw.jobs.get(job.job_id)).status == "succeeded"
    [sent] = _outbox(tmp_path)
    assert sent.attachments[0].content == b"later"


def test_attachments_name_a_configured_storage_and_go_on_email_only(tmp_path):
    bad_tag = {"email": {**INVOICE["email"], "attachments": [{"storage": "nope", "key": "k"}]}}
    with pytest.raises(ConfigError, match=r"invoice\.email\.attachments\[0\]\.storage: no storage"):
        Config.from_dict(_raw({"invoice": bad_tag}), root=tmp_path)
    on_sms = {"sms": {"body": "x", "attachments": [{"storage": "files", "key": "k"}]}}
    with pytest.raises(ConfigError, match="only email messages carry attachments"):
        Config.from_dict(_raw({"invoice": on_sms}), root=tmp_path)
    bad_template = {"email": {"body": "x", "attachments": [{"storage": "files", "key": "{{ a"}]}}
    with pytest.raises(ConfigError, match=r"attachments\[0\]\.key"):
        Config.from_dict(_raw({"invoice": bad_template}), root=tmp_path)
