"""Options of the ``kafka`` broker, and the librdkafka settings they make for TLS and SASL.

Security: ``security_protocol`` is ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``
(``SASL_PLAINTEXT`` when only ``sasl_username`` is set, else ``PLAINTEXT``). With ``SSL`` or
``SASL_SSL`` the shared TLS options (:mod:`ductwork.providers.tls`: ``ca_file``, ``cert_file``,
``key_file``, ``key_password``) become librdkafka's ``ssl.ca.location``,
``ssl.certificate.location``, ``ssl.key.location`` and ``ssl.key.password``, with paths
resolved against the config's folder. librdkafka reads those files itself (it takes no
``ssl.SSLContext``), so :func:`check_tls_files` reads them first with the shared
:func:`~ductwork.providers.tls.client_context`: a missing, unreadable or non-PEM file, or a key
that the password does not open, is a ``ConfigError`` naming the option before anything
connects. ``ssl.endpoint.identification.algorithm`` is always ``https``: the broker's
certificate must name the host connected to (librdkafka's default since 2.0, set anyway).

``ssl_ca_location`` is the deprecated name of ``ca_file``: it still works, with a
``DeprecationWarning``, and cannot be given together with ``ca_file``.

Refused at load: TLS options while ``security_protocol`` has no SSL, SASL credentials while it
has no SASL, ``SASL_*`` without credentials, and the shared TLS options' own rules
(``key_file``/``key_password`` need ``cert_file``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

from ductwork.providers.base import ProviderContext
from ductwork.providers.tls import TlsOptions, client_context
from pydantic import Field, SecretStr, model_validator

__all__ = [
    "KafkaBrokerOptions",
    "check_tls_files",
    "security_config",
    "tls_problem",
    "unreachable_reason",
]

ConfigValue = str | int | float | bool
Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
_TURN_TLS_ON = "set security_protocol: SSL (or SASL_SSL)"


class KafkaBrokerOptions(TlsOptions):
    """Options of the ``kafka`` broker."""

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "ductwork"
    security_protocol: Protocol | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = Field(
        None, min_length=1, deprecated="ssl_ca_location is deprecated: use ca_file"
    )
    auto_create_topics: bool = True
    num_partitions: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)
    session_timeout_ms: int = Field(6000, ge=1)
    heartbeat_interval_ms: int = Field(1000, ge=1)
    max_poll_interval_ms: int = Field(300_000, ge=1)
    auto_offset_reset: Literal["latest", "earliest"] = "latest"
    max_in_flight: int = Field(1000, ge=1)
    delivery_timeout_ms: int = Field(30_000, ge=1)
    connect_timeout: float = Field(5.0, gt=0)
    join_timeout: float = Field(30.0, gt=0)
    producer_config: dict[str, ConfigValue] = Field(default_factory=dict)
    consumer_config: dict[str, ConfigValue] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _old_name_of_ca_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("ssl_ca_location") is None:
            return data
        if data.get("ca_file") is not None:
            raise ValueError("give ca_file only: ssl_ca_location is its deprecated name")
        warnings.warn(
            "the kafka option ssl_ca_location is deprecated: use ca_file (same meaning)",
            DeprecationWarning,
            stacklevel=2,
        )
        return {**data, "ca_file": data["ssl_ca_location"]}

    @model_validator(mode="after")
    def _security_fits_the_protocol(self) -> KafkaBrokerOptions:
        if (self.sasl_username is None) != (self.sasl_password is None):
            raise ValueError("sasl_username and sasl_password go together")
        sasl = self.protocol.startswith("SASL_")
        if self.sasl_username is not None and not sasl:
            raise ValueError(
                f"sasl_username and sasl_password given but security_protocol is "
                f"{self.protocol}: use SASL_PLAINTEXT or SASL_SSL"
            )
        if sasl and self.sasl_username is None:
            raise ValueError(f"security_protocol {self.protocol} needs sasl_username/sasl_password")
        if "ssl_ca_location" in self.model_fields_set and not self.uses_tls:
            raise ValueError(f"ssl_ca_location given but TLS is off: {_TURN_TLS_ON}")
        self.refuse_tls_files(self.uses_tls, _TURN_TLS_ON)
        return self

    @property
    def protocol(self) -> Protocol:
        """The security protocol in force (``security_protocol`` or what it defaults to)."""
        if self.security_protocol is not None:
            return self.security_protocol
        return "SASL_PLAINTEXT" if self.sasl_username is not None else "PLAINTEXT"

    @property
    def uses_tls(self) -> bool:
        """Whether connections speak TLS (``SSL`` or ``SASL_SSL``)."""
        return self.protocol.endswith("SSL")


def security_config(options: KafkaBrokerOptions, context: ProviderContext) -> dict[str, str]:
    """The ``security.protocol``, ``sasl.*`` and ``ssl.*`` settings librdkafka takes."""
    config: dict[str, str] = {"security.protocol": options.protocol}
    if options.sasl_username is not None and options.sasl_password is not None:
        config["sasl.mechanism"] = options.sasl_mechanism
        config["sasl.username"] = options.sasl_username
        config["sasl.password"] = options.sasl_password.get_secret_value()
    if options.uses_tls:
        config["ssl.endpoint.identification.algorithm"] = "https"
        if options.ca_file is not None:
            config["ssl.ca.location"] = str(context.resolve(options.ca_file))
        if options.cert_file is not None:
            cert = str(context.resolve(options.cert_file))
            config["ssl.certificate.location"] = cert
            # librdkafka loads no key unless told where: the key may sit in cert_file itself.
            key = options.key_file
            config["ssl.key.location"] = cert if key is None else str(context.resolve(key))
            if options.key_password is not None:
                config["ssl.key.password"] = options.key_password.get_secret_value()
    return config


def check_tls_files(options: KafkaBrokerOptions, context: ProviderContext) -> None:
    """Read the TLS files as librdkafka will, so a bad one fails naming its option.

    Raises:
        ConfigError: a file is missing, unreadable or not PEM, or the key cannot be opened.
    """
    if options.uses_tls and options.tls_files():
        client_context(options, context)  # the context itself is not used: librdkafka makes its own


def tls_problem(failure: str, options: KafkaBrokerOptions) -> str:
    """A sentence saying why the TLS handshake librdkafka reported as ``failure`` failed."""
    if "certificate verify failed" not in failure:
        return f"TLS handshake failed ({failure})"
    # librdkafka's advice names its own settings (ssl.ca.location): ours follows instead.
    detail = failure.split(": broker certificate could not be verified")[0]
    trusted = (
        "the CA in ca_file"
        if options.ca_file is not None
        else "a CA of the system's store (set ca_file to the CA that signed it)"
    )
    return (
        f"TLS: the broker's certificate was not accepted ({detail}): it must be signed by "
        f"{trusted} and name the host connected to"
    )


def unreachable_reason(reported: Mapping[str, str], options: KafkaBrokerOptions, text: str) -> str:
    """Why no broker answered: what error_cb reported (``"tls"``, ``"network"``), or ``text``."""
    if "tls" in reported:
        return tls_problem(reported["tls"], options)
    if "network" in reported:
        return reported["network"]
    if options.uses_tls:
        # Nothing reported: the broker closed the connection during or right after the
        # handshake (as it does when it wants a client certificate), or never answered.
        return (
            f"{text}; with TLS on, check that the port speaks TLS and, if the broker asks for "
            "a client certificate, cert_file and key_file"
        )
    return text
