"""A local Expo push API built from Expo's published reference (no Expo server is reachable).

``/--/api/v2/push/send`` takes a JSON array of at most 100 messages and answers
``{"data": [ticket, …]}``, one ticket per message in order: ``{"status": "ok", "id": …}`` or
``{"status": "error", "message": …, "details": {"error": CODE}}`` with the codes Expo documents
(``DeviceNotRegistered``, ``MessageTooBig`` for a message over 4096 bytes,
``MessageRateExceeded``, ``InvalidCredentials``). A request refused as a whole answers
``{"errors": [{"code", "message"}]}`` with a 4xx (more than 100 messages; a missing or wrong
access token when the project requires one). ``/--/api/v2/push/getReceipts`` takes
``{"ids": […]}`` and answers ``{"data": {id: {"status": "ok"}}}`` for tickets it issued.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from ductwork.providers.notifier import Notification
from ductwork.testing.contract import Canned, ContractState, Request, contract_app
from ductwork.testing.servers import asgi_server

ACCESS_TOKEN = "expo-access-" + "t0ken-for-tests"
MAX_BYTES = 4096


@dataclass
class Expo:
    state: ContractState
    unregistered: set[str] = field(default_factory=set)
    rate_limited: set[str] = field(default_factory=set)
    bad_credentials: set[str] = field(default_factory=set)
    require_token: bool = False
    access_token: str = ACCESS_TOKEN
    issued: dict[str, dict] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.state.url

    def messages(self) -> list[dict]:
        return [m for r in self.state.requests("/--/api/v2/push/send") for m in r.body]

    def notifications(self) -> list[Notification]:
        """What was accepted, as notifications (the suite's outbox)."""
        return [
            Notification(
                channel="push",
                to=[m["to"]],
                subject=m.get("title"),
                body=m.get("body", ""),
                data=m.get("data", {}),
            )
            for m in self.issued.values()
        ]

    def ticket(self, message: dict) -> dict:
        token = message.get("to")
        if len(json.dumps(message).encode()) > MAX_BYTES:
            return _error("MessageTooBig", "Message was too big; the maximum is 4096 bytes")
        if token in self.unregistered:
            return _error("DeviceNotRegistered", f'"{token}" is not a registered push recipient')
        if token in self.rate_limited:
            return _error("MessageRateExceeded", "Too many messages to this device")
        if token in self.bad_credentials:
            return _error("InvalidCredentials", "The push credentials are invalid")
        ticket_id = str(uuid.uuid4())
        self.issued[ticket_id] = message
        return {"status": "ok", "id": ticket_id}

    def send(self, request: Request) -> Canned:
        if self.require_token and request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return _refused(401, "UNAUTHORIZED", "The bearer token is invalid")
        messages = request.body if isinstance(request.body, list) else [request.body]
        if len(messages) > 100:
            return _refused(400, "PUSH_TOO_MANY_NOTIFICATIONS", "More than 100 messages")
        return Canned(200, {"data": [self.ticket(m) for m in messages]})

    def receipts(self, request: Request) -> Canned:
        ids = request.body.get("ids", [])
        return Canned(200, {"data": {i: {"status": "ok"} for i in ids if i in self.issued}})


def _error(code: str, message: str) -> dict:
    return {"status": "error", "message": message, "details": {"error": code}}


def _refused(status: int, code: str, message: str) -> Canned:
    return Canned(status, {"errors": [{"code": code, "message": message}]})


@pytest.fixture(scope="session")
def expo_server() -> Iterator[Expo]:
    expo = Expo(ContractState())
    app = contract_app(
        expo.state,
        {"/--/api/v2/push/send": expo.send, "/--/api/v2/push/getReceipts": expo.receipts},
    )
    with asgi_server(app) as url:
        expo.state.url = url
        yield expo


@pytest.fixture
def expo(expo_server: Expo) -> Expo:
    expo_server.state.reset()
    for tokens in (expo_server.unregistered, expo_server.rate_limited, expo_server.bad_credentials):
        tokens.clear()
    expo_server.require_token = False
    expo_server.issued.clear()
    return expo_server
