"""The ``apps:`` section of ``ductwork.yaml``: HTTP apps, their environments and actions.

::

    apps:
      email-service:
        dev: {base_url: "http://127.0.0.1:8025"}
        prd:
          base_url: https://mail.example.com/v1
          auth: {kind: bearer, token: "${secret:MAIL_TOKEN}"}
          timeout: 5s
        retry: {retries: 3, on_status: [429, 500, 502, 503, 504]}
        actions:
          send_welcome_email:
            method: POST
            path: /templates/{template}/send
            body: {to: str, name: str, tags: list?}

Inside an app, a key naming an environment holds that env's settings (:class:`AppEnv`); the
other keys are app settings. Env settings are checked when the config loads; ``${env:…}`` and
``${secret:…}`` references in them are resolved when the env is used.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ductwork._hints import did_you_mean
from ductwork.apps.schema import field_schema
from ductwork.config.durations import Duration
from ductwork.config.sizes import Size
from ductwork.resilience.models import UsageLimit

__all__ = [
    "ActionAuth",
    "AppAction",
    "AppEnv",
    "AppResource",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "NoAuth",
    "OAuth2Auth",
    "RetryOverrides",
    "RetryPolicy",
    "TokenAuth",
    "check_env",
    "describe_env_errors",
]

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
Placement = Literal["header", "query", "body", "params"]
FieldSpec = str | dict[str, Any]
MAX_RESPONSE_SIZE = 32 * 1024 * 1024
"""The default ``max_response_size``: 32 MiB read whole into ``result.body``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- auth -----------------------------------------------------------------------------------


class NoAuth(_Model):
    """No credentials."""

    kind: Literal["none"] = "none"


class TokenAuth(_Model):
    """A static token placed in a header, the query, the body or a path parameter."""

    kind: Literal["token"]
    token: str
    in_: Placement = Field("header", alias="in")
    name: str = Field("Authorization", description="header, query, body or path field name")
    prefix: str = Field("", description="text before the token, e.g. 'Token '")


class BasicAuth(_Model):
    """HTTP basic authentication."""

    kind: Literal["basic"]
    username: str
    password: str


class BearerAuth(_Model):
    """``Authorization: Bearer <token>``."""

    kind: Literal["bearer"]
    token: str


class OAuth2Auth(_Model):
    """OAuth2 client credentials; the token is re-issued ``refresh_before`` its expiry."""

    kind: Literal["oauth2"]
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    audience: str | None = None
    client_auth: Literal["basic", "body"] = Field(
        "basic", description="send the client credentials as HTTP basic (RFC 6749) or in the form"
    )
    refresh_before: Duration = Field(30.0, description="re-issue this long before expiry")


class ActionAuth(_Model):
    """A token obtained by running another action of the app (a login call)."""

    kind: Literal["action"]
    action: str
    input: dict[str, Any] = Field(default_factory=dict)
    token_path: str = Field("access_token", description="dotted path to the token in the body")
    expires_in_path: str | None = Field("expires_in", description="dotted path to its lifetime")
    expires_in: Duration | None = Field(None, description="lifetime when the response has none")
    refresh_before: Duration = 30.0
    in_: Placement = Field("header", alias="in")
    name: str = "Authorization"
    prefix: str = "Bearer "


Auth = Annotated[
    NoAuth | TokenAuth | BasicAuth | BearerAuth | OAuth2Auth | ActionAuth,
    Field(discriminator="kind"),
]
AUTH_KINDS: dict[str, type[BaseModel]] = {
    "none": NoAuth,
    "token": TokenAuth,
    "basic": BasicAuth,
    "bearer": BearerAuth,
    "oauth2": OAuth2Auth,
    "action": ActionAuth,
}


class AppEnv(_Model):
    """One environment of an app: where it is, how to authenticate, how long to wait."""

    base_url: str
    auth: Auth = Field(default_factory=NoAuth)
    timeout: Duration = Field(30.0, description="per attempt: read, write and pool wait")
    connect_timeout: Duration | None = Field(None, description="default: timeout")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every call")
    http2: bool = Field(False, description="needs the h2 package")
    max_connections: int = Field(100, ge=1)
    verify: bool = Field(True, description="verify TLS certificates")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")


# -- retries --------------------------------------------------------------------------------


class RetryPolicy(_Model):
    """When and how often a call is retried (exponential backoff, full jitter)."""

    retries: int = Field(2, ge=0, description="retries after the first attempt")
    on_status: list[int] = Field(default_factory=lambda: [429, 500, 502, 503, 504])
    on_connection_error: bool = Field(True, description="refused or reset connections")
    on_timeout: bool = Field(False, description="a timed-out request may have been applied")
    backoff: Duration = Field(0.2, description="first delay; doubles each retry")
    backoff_max: Duration = Field(10.0, description="cap on one delay")
    retry_after_max: Duration = Field(60.0, description="cap on an honoured Retry-After")

    def merged(self, overrides: RetryOverrides | None) -> RetryPolicy:
        """This policy with the fields ``overrides`` sets."""
        if overrides is None:
            return self
        return self.model_copy(update=overrides.model_dump(exclude_none=True))


class RetryOverrides(_Model):
    """An action's changes to its app's retry policy (unset fields keep the app's)."""

    retries: int | None = Field(None, ge=0)
    on_status: list[int] | None = None
    on_connection_error: bool | None = None
    on_timeout: bool | None = None
    backoff: Duration | None = None
    backoff_max: Duration | None = None
    retry_after_max: Duration | None = None


# -- actions --------------------------------------------------------------------------------


class AppAction(_Model):
    """One endpoint: method, path template, request type and input schemas."""

    method: str = "GET"
    path: str
    request: Literal["json", "form", "multipart"] = "json"
    params: dict[str, FieldSpec] = Field(default_factory=dict, description="path parameters")
    query: dict[str, FieldSpec] = Field(default_factory=dict)
    headers: dict[str, FieldSpec] = Field(default_factory=dict)
    body: dict[str, FieldSpec] | None = Field(None, description="named body fields")
    body_schema: dict[str, Any] | None = Field(
        None, description="a whole JSON Schema, for a body that is not an object of fields"
    )
    response: dict[str, Any] | None = Field(None, description="JSON Schema of a success body")
    check_response: bool = Field(False, description="refuse a body not matching `response`")
    auth: bool = Field(True, description="false for calls made without the app's credentials")
    retry: RetryOverrides | None = None
    timeout: Duration | None = None
    max_response_size: Size | None = Field(None, ge=1, description="default: the app's")
    summary: str | None = None
    limits: UsageLimit | None = Field(
        None, description="usage limit: {key, max, per, cache} (see docs/resilience.md)"
    )

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        return value.upper()

    @field_validator("params", "query", "headers", "body")
    @classmethod
    def _fields(cls, value: dict[str, FieldSpec] | None) -> dict[str, FieldSpec] | None:
        for name, spec in (value or {}).items():
            try:
                field_schema(spec)
            except ValueError as exc:
                raise ValueError(f"field {name!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> AppAction:
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if self.body is not None and self.body_schema is not None:
            raise ValueError("give either body (named fields) or body_schema, not both")
        used = PLACEHOLDER.findall(self.path)
        unused = sorted(set(self.params) - set(used))
        if unused:
            raise ValueError(f"params {', '.join(unused)} do not appear in path {self.path!r}")
        return self

    def path_params(self) -> dict[str, FieldSpec]:
        """Declared path parameters plus every undeclared ``{name}`` of the path.

        An undeclared one takes a string or a number (both format into a path the same way).
        """
        found: dict[str, FieldSpec] = {
            name: {"type": ["string", "integer"]} for name in PLACEHOLDER.findall(self.path)
        }
        found.update(self.params)
        return found


# -- the app --------------------------------------------------------------------------------


class AppResource(_Model):
    """An HTTP app: per-env settings, its actions and its retry policy."""

    description: str | None = None
    actions: dict[str, AppAction] = Field(default_factory=dict)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    max_response_size: Size = Field(
        MAX_RESPONSE_SIZE, ge=1, description="largest body read whole (stream: no limit)"
    )
    # env -> raw settings (references unresolved); kept out of the fields so that error
    # messages list only the app's own settings as allowed keys
    _envs: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @property
    def envs(self) -> dict[str, dict[str, Any]]:
        """Each environment's settings as written (``${…}`` references unresolved)."""
        return self._envs

    @model_validator(mode="wrap")
    @classmethod
    def _split_envs(
        cls, data: Any, handler: ModelWrapValidatorHandler[AppResource], info: ValidationInfo
    ) -> AppResource:
        if not isinstance(data, dict):
            return handler(data)
        environments = (info.context or {}).get("environments", ())
        envs: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in data.items():
            (envs if key in environments else rest)[key] = value
        actions = rest.get("actions") if isinstance(rest.get("actions"), dict) else {}
        for env, settings in envs.items():
            check_env(env, settings, actions or {})
        model = handler(rest)
        model._envs = envs
        return model


def check_env(env: str, settings: Any, actions: dict[str, Any]) -> AppEnv:
    """Validate one env's settings; a clear one-line problem per field otherwise."""
    if not isinstance(settings, dict):
        raise PydanticCustomError(
            "app_env",
            "env '{env}' must be a mapping with base_url and the env's settings",
            {"env": env},
        )
    try:
        model = AppEnv.model_validate(settings)
    except pydantic.ValidationError as exc:
        lines = describe_env_errors(exc)
        raise PydanticCustomError(
            "app_env", "env '{env}': {problems}", {"env": env, "problems": "; ".join(lines)}
        ) from None
    auth = model.auth
    if isinstance(auth, ActionAuth) and auth.action not in actions:
        raise PydanticCustomError(
            "app_env",
            "env '{env}': auth.action '{action}' is not an action of this app",
            {"env": env, "action": auth.action},
        )
    return model


def describe_env_errors(exc: pydantic.ValidationError) -> list[str]:
    """One line per problem in an env's settings: where, what, what is allowed; no values."""
    return [_describe_env_error(err) for err in exc.errors()]


def _describe_env_error(err: Any) -> str:
    raw = [str(p) for p in err["loc"]]
    # a discriminated union puts the auth kind in the path: auth.bearer.token -> auth.token
    loc = [p for i, p in enumerate(raw) if not (i and raw[i - 1] == "auth" and p in AUTH_KINDS)]
    where = ".".join(loc) or "settings"
    if err["type"] == "extra_forbidden":
        owner: type[BaseModel] = AppEnv
        for part in raw[:-1]:
            if part in AUTH_KINDS:
                owner = AUTH_KINDS[part]
        allowed = sorted(
            (f.alias or n) if n.endswith("_") else n for n, f in owner.model_fields.items()
        )
        hint = did_you_mean(loc[-1], allowed)
        return f"{where}: unknown option {loc[-1]!r}{hint} (allowed: {', '.join(allowed)})"
    if err["type"] == "missing":
        return f"{where}: required option {loc[-1]!r} is missing"
    if err["type"] == "union_tag_invalid":
        return f"{where}: kind must be one of {', '.join(AUTH_KINDS)}"
    return f"{where}: {err['msg']}"
