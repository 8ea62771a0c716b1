"""Notification templates are the product's one expression language (Jinja2, sandboxed)."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from ductwork import ConfigError, ValidationError
from ductwork.builtin.mailbox import read_outbox
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.demo import sample_config
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape


def _config(tmp_path, messages):
    raw = yaml.safe_load(sample_config())
    raw["notifications"]["mail"]["messages"].update(messages)
    return Config.from_dict(raw, root=tmp_path)


async def test_filters_conditions_and_dotted_names_render(tmp_path):
    messages = {
        "order": {
            "email": {
                "subject": "Order {{ order.id }} for {{ user.name | title }}",
                "body": "{% if order.total > 100 %}Free shipping. {% endif %}"
                "{{ order.items | join(', ') }}",
            }
        }
    }
    async with Ductwork(_config(tmp_path, messages), env="dev") as dw:
        data = {
            "user": {"name": "ada lovelace"},
            "order": {"id": 7, "total": 120, "items": ["a", "b"]},
        }
        await dw.notifications.send("mail", "order", to="ada@example.com", data=data)
    [sent] = read_outbox(tmp_path / ".ductwork/outbox")
    assert sent.subject == "Order 7 for Ada Lovelace"
    assert sent.body.strip() == "Free shipping. a, b"


@settings(max_examples=25, deadline=None)
@given(name=st.text(alphabet=st.sampled_from("<>&\"'ab "), min_size=1, max_size=12))
def test_html_templates_escape_what_they_insert_text_ones_do_not(tmp_path_factory, name):
    tmp_path = tmp_path_factory.mktemp("escape")
    dw = Ductwork(_config(tmp_path, {}), env="dev")
    built = dw.notifications.build(
        "mail",
        "welcome",
        to="ada@example.com",
        channel=None,
        data={"name": name},
        subject=None,
        body=None,
        html=None,
        attachments=(),
    )
    assert built.subject == f"Welcome to the shop, {name}"
    assert built.body == f"Hello {name}, your account is ready."
    assert built.html == f"<p>Hello <b>{escape(name)}</b>, your account is ready.</p>"


def test_a_template_that_does_not_parse_is_refused_at_load_with_its_place(tmp_path):
    messages = {"bad": {"sms": {"body": "Hi {{ name "}}}
    with pytest.raises(ConfigError, match=r"notifications\.mail\.messages\.bad\.sms\.body"):
        _config(tmp_path, messages)


async def test_a_missing_value_and_sandbox_tricks_are_refused_before_sending(tmp_path):
    messages = {"poke": {"sms": {"body": "{{ name.__class__ }}"}}}
    async with Ductwork(_config(tmp_path, messages), env="dev") as dw:
        with pytest.raises(ValidationError, match=r"mail:welcome"):
            await dw.notifications.send("mail", "welcome", to="a@example.com", data={})
        with pytest.raises(ValidationError, match=r"mail:poke"):
            await dw.notifications.send("mail", "poke", to="+15550100", data={"name": "x"})
        with pytest.raises(ValidationError, match="ad hoc"):
            await dw.notifications.send("mail", to="a@example.com", body="Hi {{ nobody }}", data={})
    assert read_outbox(tmp_path / ".ductwork/outbox") == []


async def test_a_notification_step_passes_its_key_as_the_receipt_id(tmp_path):
    async with Ductwork(_config(tmp_path, {}), env="dev") as dw:
        data = {"id": 5, "name": "Ada", "email": "ada@example.com"}
        out = await dw.features.run("signup", data)
        [run] = await dw.features.list("signup")
    key = f"{run.job_id}:welcome/email"
    assert out["welcome_receipt"] == key
    [eml] = (tmp_path / ".ductwork/outbox").glob("*.eml")
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    # a repeated send carries the same Message-ID
    assert f"Message-ID: <{digest}@ductwork>" in eml.read_text()
