"""Client TLS for providers: one set of options, one way to build the ``ssl.SSLContext``.

Features: :class:`TlsOptions` adds ``ca_file``, ``cert_file``, ``key_file`` and ``key_password``
to a provider's options; :func:`client_context` turns them into a client-side
:class:`ssl.SSLContext` (TLS 1.2 or later) that verifies the server's certificate and that the
certificate names the host connected to. Whether TLS is on stays each provider's own option
(``ssl``, ``use_tls``, ``tls``, or a ``rediss://``/``amqps://``/``tls://`` URL), so existing
configs keep working; :meth:`TlsOptions.refuse_tls_files` lets a provider's validator refuse
TLS files while TLS is off. :func:`tls_failure` words a failed handshake found in an exception
chain, for the provider's :class:`~ductwork.errors.ConnectionFailedError`.

Configuration: ``ca_file`` is a PEM bundle of the CAs trusted to sign the server's certificate;
when it is given only those CAs are trusted, otherwise the system's store. ``cert_file`` is the
client certificate (PEM, chain included), ``key_file`` its private key (omit it when the key is
in ``cert_file``), ``key_password`` the password of an encrypted key (a secret). Relative paths
resolve against the config's folder through :meth:`ProviderContext.resolve`.

Errors: a file that is missing, unreadable or not PEM, an encrypted key without
``key_password``, a wrong password or a key that does not match the certificate ->
:class:`~ductwork.errors.ConfigError` naming the option, the file and the resource, raised by
:func:`client_context` before anything connects. Messages never contain key material or the
password.

Ordering: files are read on each call of :func:`client_context`, which providers make once,
when they are built or opened (never per connection); renewed certificates on disk are picked
up by the next provider built, or the next ``open`` where the provider reads them there.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from ductwork.errors import ConfigError
from ductwork.providers.base import Options, ProviderContext

__all__ = ["TLS_FIELDS", "TlsOptions", "client_context", "tls_failure"]

TLS_FIELDS = ("ca_file", "cert_file", "key_file", "key_password")
"""The option names :class:`TlsOptions` adds, in the order they are documented."""


class TlsOptions(Options):
    """TLS fields shared by every provider that talks TLS; subclass it instead of ``Options``."""

    ca_file: str | None = Field(None, min_length=1)
    cert_file: str | None = Field(None, min_length=1)
    key_file: str | None = Field(None, min_length=1)
    key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _client_certificate(self) -> Self:
        if self.cert_file is None:
            given = [n for n in ("key_file", "key_password") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} need cert_file (the client certificate)")
        return self

    def tls_files(self) -> list[str]:
        """The TLS options that are set, by name."""
        return [name for name in TLS_FIELDS if getattr(self, name) is not None]

    def refuse_tls_files(self, enabled: bool, how: str) -> None:
        """Refuse TLS options while TLS is off, so a CA file is never silently unused.

        Raises:
            ValueError: some are set and ``enabled`` is false; ``how`` says how to turn TLS on.
        """
        given = self.tls_files()
        if given and not enabled:
            raise ValueError(f"{', '.join(given)} given but TLS is off: {how}")


class _NeedsPassword(Exception):
    """OpenSSL asked for the key's password and none is configured."""


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal, which blocks a server.
    raise _NeedsPassword


def client_context(
    options: TlsOptions, context: ProviderContext, *, verify: bool = True
) -> ssl.SSLContext:
    """A client :class:`ssl.SSLContext` built from ``options``.

    Args:
        options: the provider's options (a :class:`TlsOptions`).
        context: the provider's context; relative paths resolve against its root, and errors
            name its resource and env.
        verify: check the server's certificate and host name. Only a provider whose backend
            has an explicit opt-out (smtp's ``validate_certs``) passes ``False``.

    Raises:
        ConfigError: a file is missing, unreadable or not PEM, or the key cannot be decrypted.
    """

    def fail(option: str, message: str) -> ConfigError:
        # ``{file}`` in message: the file as resolved, and as written when it was relative.
        raw = getattr(options, option)
        shown = str(context.resolve(raw))
        if not Path(raw).expanduser().is_absolute():
            shown += f" (resolved from {raw!r})"
        return ConfigError(
            message.replace("{file}", shown),
            env=context.env,
            path=f"{context.resource}.{context.env}.{option}",
        )

    def readable(option: str) -> str | None:
        raw = getattr(options, option)
        if raw is None:
            return None
        path = context.resolve(raw)
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise fail(option, f"cannot read {{file}}: {exc.strerror or exc}") from None
        return str(path)

    ca_file, cert_file, key_file = (readable(o) for o in ("ca_file", "cert_file", "key_file"))
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise fail("ca_file", f"{{file}} holds no PEM certificate ({_reason(exc)})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # the default since Python 3.10; kept explicit
    if not verify:
        ctx.check_hostname = False  # before verify_mode: OpenSSL refuses the other order
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        secret = options.key_password
        password = secret.get_secret_value() if secret is not None else _no_password
        try:
            ctx.load_cert_chain(cert_file, key_file, password=password)
        except _NeedsPassword:
            raise fail(
                "key_file" if key_file else "cert_file",
                "the private key in {file} is encrypted: set key_password",
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise fail(
                "cert_file",
                "cannot load the client certificate {file}"
                + (f" with key_file {key_file}" if key_file else "")
                + f" ({_reason(exc)}): not PEM, a key that does not match the certificate"
                + (", or a wrong key_password" if secret is not None else ""),
            ) from None
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or "invalid")
    return str(getattr(exc, "strerror", None) or exc)


# Alerts a server sends when it does not accept the client's certificate (or none was sent).
_CLIENT_REFUSED = (
    "CERTIFICATE_REQUIRED",
    "ALERT_BAD_CERTIFICATE",
    "ALERT_UNKNOWN_CA",
    "ALERT_CERTIFICATE_UNKNOWN",
)


def tls_failure(exc: BaseException) -> str | None:
    """A sentence saying why the TLS handshake in ``exc``'s chain failed, or ``None``.

    Looks through ``__cause__`` and ``__context__`` (SDKs wrap the :mod:`ssl` error), so a
    provider can put it in its :class:`~ductwork.errors.ConnectionFailedError`.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            why = current.verify_message or current.reason or "verification failed"
            if "mismatch" in str(why).lower():
                hint = "the certificate does not name the host connected to: use a name it lists"
            else:
                hint = "set ca_file to the CA that signed it"
            return f"TLS: the server's certificate was not accepted ({why}); {hint}"
        if isinstance(current, ssl.SSLError):
            reason = str(current.reason or current)
            if any(alert in reason.upper() for alert in _CLIENT_REFUSED):
                return (
                    f"TLS: the server refused the client certificate, or its absence ({reason}); "
                    "check cert_file and key_file"
                )
            if "WRONG_VERSION_NUMBER" in reason.upper() or "RECORD_LAYER" in reason.upper():
                return f"TLS: the server does not speak TLS on this port ({reason})"
            return f"TLS handshake failed ({reason})"
        todo.extend((current.__context__, current.__cause__))
    return None
