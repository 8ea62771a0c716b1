"""A local Postmark API built from Postmark's published reference (no Postmark is reachable).

``/email/batch`` takes a JSON array of at most 500 messages (``From``, ``To``, ``Subject``,
``TextBody``, ``HtmlBody``, ``Headers``, ``Attachments`` with base64 ``Content``,
``MessageStream``…) and answers 200 with one result per message, in order:
``{"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}`` or
``{"ErrorCode", "Message"}`` — 406 for inactive recipients ("Found inactive addresses: …", or
"…have all been marked as inactive"), 300 for an invalid request (no ``From``/``To``, more than
50 recipients), 411 for a forbidden attachment type. The request as a whole: 401 with
``ErrorCode`` 10 without the server's token, 422 with ``ErrorCode`` 410 past 500 messages.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formataddr, getaddresses

import pytest
from ductwork.providers.notifier import Attachment, Notification
from ductwork.testing.contract import Canned, ContractState, Request, contract_app
from ductwork.testing.servers import asgi_server

TOKEN = "pm-server-" + "t0ken-for-tests"
FORBIDDEN = (".exe", ".bat", ".vbs", ".js", ".scr")


@dataclass
class Postmark:
    state: ContractState
    token: str = TOKEN
    inactive: set[str] = field(default_factory=set)
    sent: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.state.url

    def notifications(self) -> list[Notification]:
        return [
            Notification(
                channel="email",
                to=[formataddr(pair) for pair in getaddresses([m["To"]])],
                subject=m.get("Subject"),
                body=m.get("TextBody", ""),
                html=m.get("HtmlBody"),
                sender=m["From"],
                attachments=[
                    Attachment(a["Name"], base64.b64decode(a["Content"]), a["ContentType"])
                    for a in m.get("Attachments", [])
                ],
                headers={h["Name"]: h["Value"] for h in m.get("Headers", [])},
            )
            for m in self.sent
        ]

    def result(self, message: dict) -> dict:
        to = [addr for _, addr in getaddresses([message.get("To", "")]) if addr]
        if not message.get("From") or not to or len(to) > 50:
            return {"ErrorCode": 300, "Message": "Invalid 'To' or 'From' address."}
        for att in message.get("Attachments", []):
            if att["Name"].lower().endswith(FORBIDDEN):
                return {"ErrorCode": 411, "Message": f"Forbidden attachment type: {att['Name']}"}
        addresses = [a.lower() for a in to]
        inactive = [a for a in addresses if a in self.inactive]
        if inactive and len(inactive) == len(addresses):
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to recipients that have all been marked as "
                "inactive. Inactive recipients are ones that have generated a hard bounce or a "
                "spam complaint.",
            }
        if inactive:
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to a recipient that has been marked as inactive. "
                f"Found inactive addresses: {', '.join(inactive)}. Inactive recipients are ones "
                "that have generated a hard bounce or a spam complaint.",
            }
        self.sent.append(message)
        return {
            "To": message["To"],
            "SubmittedAt": dt.datetime.now(dt.UTC).isoformat(),
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }

    def batch(self, request: Request) -> Canned:
        if request.headers.get("x-postmark-server-token") != self.token:
            return Canned(401, {"ErrorCode": 10, "Message": "No valid Server token."})
        if not isinstance(request.body, list):
            return Canned(422, {"ErrorCode": 402, "Message": "Invalid JSON"})
        if len(request.body) > 500:
            return Canned(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
        return Canned(200, [self.result(m) for m in request.body])


@pytest.fixture(scope="session")
def postmark_server() -> Iterator[Postmark]:
    postmark = Postmark(ContractState())
    with asgi_server(contract_app(postmark.state, {"/email/batch": postmark.batch})) as url:
        postmark.state.url = url
        yield postmark


@pytest.fixture
def postmark(postmark_server: Postmark) -> Postmark:
    postmark_server.state.reset()
    postmark_server.inactive.clear()
    postmark_server.sent.clear()
    return postmark_server
