"""Options of the ``rabbitmq`` broker: where RabbitMQ is, TLS, and the topology's settings.

Connection: either ``url`` (``amqp://`` or ``amqps://``, a secret since it may carry the
password) or the fields ``host``/``port``/``username``/``password``/``virtual_host``/``ssl``.
TLS is on with ``ssl: true`` or ``amqps://``; the shared TLS options (``ca_file``, ``cert_file``,
``key_file``, ``key_password``) need it on, and exclude aiormq's own TLS parameters in the URL's
query (``cafile``, ``certfile``, ``keyfile``, ``no_verify_ssl``…), which keep working alone.
"""

from __future__ import annotations

from typing import Literal

from ductwork.config import Duration
from ductwork.providers.tls import TlsOptions
from pydantic import Field, SecretStr, model_validator
from yarl import URL

__all__ = ["RabbitMQBrokerOptions"]

_CONNECTION_FIELDS = frozenset({"host", "port", "username", "password", "virtual_host", "ssl"})
# aiormq reads these from an amqps:// URL's query to build its own TLS context.
_URL_TLS = frozenset({"cafile", "capath", "cadata", "keyfile", "certfile", "no_verify_ssl"})


class RabbitMQBrokerOptions(TlsOptions):
    """Options of the ``rabbitmq`` broker."""

    url: SecretStr | None = None
    host: str = "localhost"
    port: int = Field(5672, ge=1, le=65535)
    username: str = "guest"
    password: SecretStr = SecretStr("guest")
    virtual_host: str = "/"
    ssl: bool = False
    exchange: str = Field("ductwork", min_length=1, max_length=120)
    queue_type: Literal["quorum", "classic"] = "quorum"
    prefetch: int = Field(100, ge=1, le=65535)
    connect_timeout: Duration = 10.0
    reconnect_interval: Duration = 1.0
    publish_timeout: Duration = 10.0
    mandatory: bool = False
    queue_expires: Duration | None = None
    app_id: str = Field("ductwork", min_length=1, max_length=255)

    @model_validator(mode="after")
    def _url_or_fields(self) -> RabbitMQBrokerOptions:
        if self.url is not None:
            both = sorted(_CONNECTION_FIELDS & self.model_fields_set)
            if both:
                raise ValueError(f"give either url or {', '.join(both)}, not both")
            if URL(self.url.get_secret_value()).scheme not in ("amqp", "amqps"):
                raise ValueError("url must start with amqp:// or amqps://")
            if self.tls_files() and self.url_tls_parameters:
                raise ValueError(
                    f"give the TLS files as {', '.join(self.tls_files())} or as the url's "
                    f"{', '.join(self.url_tls_parameters)}, not both"
                )
        self.refuse_tls_files(self.uses_tls, "set ssl: true, or use an amqps:// url")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether the connection speaks TLS (``ssl: true`` or an ``amqps://`` URL)."""
        if self.url is None:
            return self.ssl
        return URL(self.url.get_secret_value()).scheme == "amqps"

    @property
    def url_tls_parameters(self) -> list[str]:
        """The TLS parameters aiormq would read from the URL's query, by name."""
        if self.url is None:
            return []
        return sorted(_URL_TLS & set(URL(self.url.get_secret_value()).query))
