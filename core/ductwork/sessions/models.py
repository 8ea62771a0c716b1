"""The ``sessions:`` section of ``ductwork.yaml``.

::

    sessions:
      users:
        selector: user_id            # the data field that names the user (list, revoke_all)
        data: {user_id: str, plan: str, admin: "bool?"}
        expiry: 1h                   # access token lifetime
        refresh_expiry: 30d          # each refresh token's lifetime
        keys:                        # the first encrypts; every one listed decrypts
          - {id: k2, key: "${secret:SESSION_KEY_2}"}
          - {id: k1, key: "${secret:SESSION_KEY_1}"}
        revocation_cache: fast       # optional: a cache tag; revocations seen within the TTL
        revocation_cache_ttl: 5s
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ductwork.config.durations import Duration

__all__ = ["DATA_TYPES", "SessionDef", "SessionKey"]

# The token carries the data as JSON, so only types that come back from JSON as they went in.
DATA_TYPES = ("str", "int", "float", "bool", "json", "list", "dict")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionKey(_Model):
    """One key: its id (the token's ``kid`` header) and 256 bits, base64url (a reference)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="key id, the JWE 'kid'")
    key: str = Field(
        min_length=1,
        description="32 random bytes, base64url; write a reference: ${secret:NAME}",
        repr=False,
    )


class SessionDef(_Model):
    """A kind of session: its data's schema, lifetimes and keys."""

    selector: str = Field(description="the data field that identifies the user")
    data: dict[str, str] = Field(description="field -> type (str int float bool json list dict)")
    expiry: Duration = Field(3600.0, description="access token lifetime")
    refresh_expiry: Duration = Field(30 * 86400.0, description="refresh token lifetime")
    keys: list[SessionKey] = Field(min_length=1, description="first encrypts, all decrypt")
    revocation_cache: str | None = Field(
        None, description="cache tag holding 'not revoked' answers (default: none)"
    )
    revocation_cache_ttl: Duration = Field(
        5.0, description="how long a cached answer is trusted: the most a revocation waits"
    )

    @field_validator("data")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for name, type_name in value.items():
            if type_name.rstrip("?") not in DATA_TYPES:
                raise ValueError(
                    f"data field {name!r} has type {type_name!r}; use one of "
                    f"{', '.join(DATA_TYPES)} (a token holds JSON)"
                )
        return value

    @model_validator(mode="after")
    def _check(self) -> SessionDef:
        kind = self.data.get(self.selector)
        if kind is None or kind.endswith("?"):
            raise ValueError(
                f"selector {self.selector!r} must be a required field of data "
                f"({', '.join(self.data) or 'none declared'})"
            )
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("keys: ids must not repeat")
        if self.expiry <= 0 or self.refresh_expiry <= 0:
            raise ValueError("expiry and refresh_expiry must be positive")
        return self
