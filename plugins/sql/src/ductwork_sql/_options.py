"""The options the ``postgres`` and ``mysql`` databases share (see :mod:`ductwork_sql._base`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from ductwork.config.durations import Duration
from ductwork.providers.tls import TlsOptions
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["SqlOptions", "SslMode"]

SslMode = Literal["disable", "require", "verify"]


class SqlOptions(TlsOptions):
    """Options shared by the ``postgres`` and ``mysql`` databases.

    The TLS options (``ca_file``, ``cert_file``, ``key_file``, ``key_password``) need ``ssl``
    on; ``ca_file`` needs ``ssl: verify``, the only mode that checks the server's certificate.
    """

    # Inputs are never echoed in validation errors: ``url`` and ``password`` carry secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    # The URL schemes (backend names) a dialect accepts; set by each dialect's options.
    schemes: ClassVar[frozenset[str]] = frozenset()

    url: SecretStr | None = None
    host: str = "localhost"
    port: int | None = Field(None, gt=0, lt=65536)
    user: str | None = None
    password: SecretStr | None = None
    database: str | None = None
    pool_size: int = Field(5, ge=1)
    max_overflow: int = Field(10, ge=0)
    pool_timeout: Duration = Field(30.0, gt=0)
    connect_timeout: Duration = Field(10.0, gt=0)
    statement_timeout: Duration | None = Field(None, gt=0)
    ssl: SslMode = "disable"
    echo: bool = False
    engine_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("url is not a database URL like scheme://user@host/db") from None
        backend = url.get_backend_name()
        if cls.schemes and backend not in cls.schemes:
            allowed = ", ".join(f"{s}://" for s in sorted(cls.schemes))
            raise ValueError(f"url scheme {backend}:// is not one of {allowed}")
        # The driver never takes these as meant: ductwork's own ``ssl`` connect argument
        # replaces them (``?ssl=require`` would connect in clear text), asyncpg refuses
        # ``sslmode``, and aiomysql skips ``?ssl_ca=`` against a server without TLS. Names only.
        tls = sorted(name for name in url.query if name.lower().startswith("ssl"))
        if tls:
            raise ValueError(
                f"TLS settings in the url ({', '.join(tls)}) are not used: set ssl "
                "(disable, require or verify) and ca_file, cert_file, key_file instead"
            )
        return value

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> Self:
        self.refuse_tls_files(self.ssl != "disable", "set ssl: verify (or require)")
        if self.ssl == "require" and self.ca_file is not None:
            # It would be read and never used: say so rather than let it look like protection.
            raise ValueError(
                "ca_file given but ssl: require does not check the server's certificate: "
                "set ssl: verify"
            )
        return self
