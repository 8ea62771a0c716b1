"""A local FCM HTTP v1 API and OAuth token endpoint, built from Google's published reference.

No Firebase server is reachable here. ``/token`` is a service-account token endpoint: it takes
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and an ``assertion`` (an RS256 JWT
signed with the account's private key, ``iss`` = its email, ``aud`` = this URI, ``scope``
``firebase.messaging``, ``exp`` at most an hour after ``iat``), checks the signature with the
account's public key, and answers ``{"access_token", "expires_in", "token_type": "Bearer"}``, or
400 ``{"error": "invalid_grant", …}``. ``/v1/projects/<project>/messages:send`` takes
``{"message": {"token", "notification", "data" (string values only), "android"…}}`` with a
bearer token it issued, and answers ``{"name": "projects/<project>/messages/<id>"}`` or a Google
error ``{"error": {"code", "message", "status", "details": [{"@type": "…FcmError",
"errorCode"}]}}``: 404 ``UNREGISTERED``, 400 ``INVALID_ARGUMENT``, 429 ``QUOTA_EXCEEDED`` (with
``Retry-After``), 503 ``UNAVAILABLE``, 401 ``UNAUTHENTICATED`` for a token it does not know.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest
from ductwork.providers.notifier import Notification
from ductwork.testing.contract import Canned, ContractState, Request, contract_app
from ductwork.testing.servers import asgi_server
from ductwork_fcm.notifier import read_fcm_data
from joserfc import jwt
from joserfc.jwk import RSAKey

PROJECT = "ductwork-test"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
EMAIL = "push@ductwork-test.iam.gserviceaccount.com"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass
class FCM:
    state: ContractState
    key: RSAKey
    unregistered: set[str] = field(default_factory=set)
    quota: set[str] = field(default_factory=set)
    unavailable: set[str] = field(default_factory=set)
    issued: set[str] = field(default_factory=set)
    expires_in: int = 3600
    sent: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.state.url

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def credentials(self, **changes) -> str:
        account = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "key-1",
            "private_key": self.key.as_pem(private=True).decode(),
            "client_email": EMAIL,
            "token_uri": self.token_uri,
        }
        return json.dumps({**account, **changes})

    def exchanges(self) -> int:
        return len(self.state.requests("/token"))

    def notifications(self) -> list[Notification]:
        return [
            Notification(
                channel="push",
                to=[m["token"]],
                subject=m.get("notification", {}).get("title"),
                body=m.get("notification", {}).get("body", ""),
                data=read_fcm_data(m.get("data", {})),
            )
            for m in self.sent
        ]

    def token(self, request: Request) -> Canned:
        form = {k: v[0] for k, v in parse_qs(request.body or "").items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _grant_error("unsupported_grant_type")
        public = RSAKey.import_key(self.key.as_pem(private=False))
        try:
            claims = jwt.decode(form.get("assertion", ""), public).claims
        except Exception:  # joserfc: any undecodable or badly signed assertion
            return _grant_error("invalid_grant", "Invalid JWT Signature.")
        if (claims.get("iss"), claims.get("aud"), claims.get("scope")) != (
            EMAIL,
            self.token_uri,
            SCOPE,
        ) or not 0 < claims["exp"] - claims["iat"] <= 3600:
            return _grant_error("invalid_grant", "Invalid JWT claims.")
        access = "ya29." + uuid.uuid4().hex
        self.issued.add(access)
        return Canned(200, {"access_token": access, "expires_in": self.expires_in,
                            "token_type": "Bearer"})  # fmt: skip

    def send(self, request: Request) -> Canned:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.issued:
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        message = (request.body or {}).get("message", {})
        token = message.get("token")
        data = message.get("data", {})
        if not token or not all(isinstance(v, str) for v in data.values()):
            return _google_error(400, "INVALID_ARGUMENT", "Invalid message", "INVALID_ARGUMENT")
        if token in self.unregistered:
            return _google_error(404, "NOT_FOUND", "Requested entity was not found.",
                                 "UNREGISTERED")  # fmt: skip
        if token in self.quota:
            return _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED",
                                 {"Retry-After": "30"})  # fmt: skip
        if token in self.unavailable:
            return _google_error(503, "UNAVAILABLE", "The service is unavailable.", "UNAVAILABLE")
        self.sent.append(message)
        return Canned(200, {"name": f"projects/{PROJECT}/messages/{uuid.uuid4().hex}"})


def _grant_error(code: str, description: str = "") -> Canned:
    return Canned(400, {"error": code, "error_description": description})


def _google_error(
    status: int, name: str, message: str, fcm: str | None = None, headers: dict | None = None
) -> Canned:
    error: dict = {"code": status, "message": message, "status": name}
    if fcm is not None:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": fcm}]
    return Canned(status, {"error": error}, headers or {})


@pytest.fixture(scope="session")
def fcm_server() -> Iterator[FCM]:
    fcm = FCM(ContractState(), RSAKey.generate_key(2048))
    routes = {"/token": fcm.token, f"/v1/projects/{PROJECT}/messages:send": fcm.send}
    with asgi_server(contract_app(fcm.state, routes)) as url:
        fcm.state.url = url
        yield fcm


@pytest.fixture
def fcm(fcm_server: FCM) -> FCM:
    fcm_server.state.reset()
    for tokens in (fcm_server.unregistered, fcm_server.quota, fcm_server.unavailable):
        tokens.clear()
    fcm_server.issued.clear()
    fcm_server.sent.clear()
    fcm_server.expires_in = 3600
    return fcm_server
