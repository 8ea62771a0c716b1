"""``smtp`` notifier: email through any SMTP server, on one reused connection.

Features: the ``email`` channel only (push, SMS and callbacks are refused with
:class:`UnsupportedError`). Messages are built by ductwork's shared
:func:`ductwork.builtin.mailbox.build_email`: a text body, an HTML alternative when given,
attachments, ``Message-ID`` and ``Date``. The envelope sender is the notification's ``sender``
or the ``sender`` option; the envelope recipients are ``to``. One connection is opened by
:meth:`SMTPNotifier.open` and reused for every send; sends are serialized on it by a lock (SMTP
carries one transaction at a time per connection). A connection the server dropped (idle
timeout, ``421``) is reopened and the send retried once.

Configuration: ``host`` (``localhost``), ``port`` (465 with ``use_tls``, 587 with
``starttls: true``, else 25), ``username``/``password`` (``SecretStr``), ``starttls`` (``None``:
upgrade when the server offers it; ``true``: require; ``false``: never), ``use_tls`` (TLS from
the first byte, "SMTPS"), ``validate_certs`` (``true``), ``timeout`` (30 s), ``sender``
(``ductwork@localhost``), ``local_hostname`` (the name sent in EHLO; default: this host's FQDN).
TLS (see :mod:`ductwork.providers.tls`): ``ca_file`` (trust only this CA bundle, e.g. a private
CA), ``cert_file``/``key_file``/``key_password`` (a client certificate); refused when TLS is off
(``use_tls: false`` and ``starttls: false``) and ``ca_file`` with ``validate_certs: false``.
The server's certificate and its name are checked unless ``validate_certs: false``.

Errors: refused, unreachable, timed out or dropped connections, and a TLS handshake that fails
(certificate not trusted, name mismatch, client certificate refused) ->
:class:`ConnectionFailedError` (the message says which); a TLS file that is missing or unreadable
-> :class:`ConfigError` before connecting; rejected credentials -> :class:`AuthenticationError` (the
message names the user, never the password); every other refusal (sender or all recipients
rejected, message refused) -> :class:`ProviderError` with the server's code and reply.

Delivery: a returned :class:`Receipt` means the server accepted the message for the recipients
it lists (a recipient the server refused while others were accepted is left out of
``Receipt.to``). The one retry after a dropped connection can, in the rare case the server
accepted the message and dropped before replying, send it twice: at least once, never silently
lost. No ordering between sends is promised beyond the order they took the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from email.utils import parseaddr
from typing import Any, ClassVar, Self

import aiosmtplib
from ductwork.builtin.mailbox import build_email
from ductwork.config.durations import Duration
from ductwork.errors import AuthenticationError, ConnectionFailedError, ProviderError
from ductwork.providers.notifier import Notification, Notifier, Receipt
from ductwork.providers.tls import TlsOptions, client_context, tls_failure
from pydantic import Field, SecretStr, model_validator

__all__ = ["SMTPNotifier", "SMTPOptions"]

# Codes after which the server closes the session; the send is worth one retry on a new one.
_CLOSING = 421


class SMTPOptions(TlsOptions):
    """Options of the ``smtp`` notifier."""

    host: str = "localhost"
    port: int | None = Field(None, gt=0, lt=65536)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool | None = None
    use_tls: bool = False
    validate_certs: bool = True
    timeout: Duration = Field(30.0, gt=0)
    sender: str = "ductwork@localhost"
    local_hostname: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.use_tls and self.starttls:
            raise ValueError("use_tls (TLS from the start) and starttls exclude each other")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password are given together or not at all")
        self.refuse_tls_files(
            self.may_use_tls, "set use_tls: true, or starttls: true (or leave starttls unset)"
        )
        if self.ca_file is not None and not self.validate_certs:
            raise ValueError("ca_file has no use with validate_certs: false")
        return self

    @property
    def may_use_tls(self) -> bool:
        """Whether a connection may speak TLS (implicit, required or offered STARTTLS)."""
        return self.use_tls or self.starttls is not False

    @property
    def effective_port(self) -> int:
        """The port to connect to, defaulted from the TLS mode."""
        if self.port is not None:
            return self.port
        if self.use_tls:
            return 465
        return 587 if self.starttls else 25


class SMTPNotifier(Notifier[SMTPOptions]):
    """Sends email over SMTP with aiosmtplib."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"email"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: aiosmtplib.SMTP | None = None
        self._tls: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        opts = self.options
        scheme = "smtps" if opts.use_tls else "smtp"
        return f"{scheme}://{opts.host}:{opts.effective_port}"

    @property
    def native(self) -> aiosmtplib.SMTP:
        """The aiosmtplib client (connected after :meth:`open`)."""
        return self._new_client() if self._client is None else self._client

    def _tls_context(self) -> ssl.SSLContext | None:
        """The TLS context, built from the options once per :meth:`open` (files read then)."""
        opts = self.options
        if self._tls is None and opts.may_use_tls:
            self._tls = client_context(opts, self.context, verify=opts.validate_certs)
        return self._tls

    def _new_client(self) -> aiosmtplib.SMTP:
        opts = self.options
        tls_context = self._tls_context()
        self._client = aiosmtplib.SMTP(
            hostname=opts.host,
            port=opts.effective_port,
            username=opts.username,
            password=opts.password.get_secret_value() if opts.password else None,
            local_hostname=opts.local_hostname,
            timeout=opts.timeout,
            use_tls=opts.use_tls,
            start_tls=opts.starttls,
            validate_certs=opts.validate_certs,
            tls_context=tls_context,
        )
        return self._client

    async def open(self) -> None:
        async with self._lock:
            self._tls = None  # re-read the TLS files: a renewed certificate is picked up here
            await self._connect()

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()  # the server went away first: nothing left to say goodbye to

    async def ping(self) -> None:
        async with self._lock:
            client = await self._connected()
            with self._translated("NOOP failed"):
                await client.noop()

    async def deliver(self, notification: Notification) -> Receipt:
        message_id = notification.message_id()
        message = build_email(notification, self.options.sender, message_id)
        sender = parseaddr(notification.sender or self.options.sender)[1]
        recipients = [parseaddr(to)[1] or to for to in notification.to]
        async with self._lock:
            reused = self._client is not None and self._client.is_connected
            client = await self._connected()
            try:
                refused, _ = await client.send_message(
                    message, sender=sender, recipients=recipients
                )
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPResponseException) as exc:
                dropped = isinstance(exc, aiosmtplib.SMTPServerDisconnected) or (
                    isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == _CLOSING
                )
                if not (reused and dropped):
                    raise self._translate(exc, "send failed") from exc
                # A held connection the server closed: one retry on a fresh one.
                client.close()
                client = await self._connected()
                with self._translated("send failed"):
                    refused, _ = await client.send_message(
                        message, sender=sender, recipients=recipients
                    )
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise self._translate(exc, "send failed") from exc
        accepted = [
            to for to, addr in zip(notification.to, recipients, strict=True) if addr not in refused
        ]
        return Receipt(id=notification.receipt_id(message_id), channel="email", to=accepted)

    async def _connected(self) -> aiosmtplib.SMTP:
        """The held client, reconnected if the server closed it (call under the lock)."""
        client = self._client
        if client is not None and client.is_connected:
            return client
        return await self._connect()

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._new_client()
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise self._translate(exc, "cannot connect") from exc
        return client

    @contextlib.contextmanager
    def _translated(self, message: str) -> Iterator[None]:
        try:
            yield
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._translate(exc, message) from exc

    def _translate(self, exc: BaseException, message: str) -> ProviderError:
        """One of ductwork's errors for an aiosmtplib or socket failure."""
        handshake = tls_failure(exc)
        if handshake is not None:
            return self.error(f"{message}: {handshake}", ConnectionFailedError)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            user = self.options.username or ""
            return self.error(
                f"{message}: the server refused the credentials of user {user!r} "
                f"({exc.code} {exc.message})",
                AuthenticationError,
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = ", ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            return self.error(f"{message}: every recipient was refused ({codes})")
        if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != _CLOSING:
            return self.error(f"{message}: {type(exc).__name__}: {exc.code} {exc.message}")
        if isinstance(
            exc,
            aiosmtplib.SMTPConnectError
            | aiosmtplib.SMTPTimeoutError
            | aiosmtplib.SMTPServerDisconnected
            | aiosmtplib.SMTPResponseException
            | OSError,
        ):
            return self.error(f"{message}: {type(exc).__name__}: {exc}", ConnectionFailedError)
        return self.error(f"{message}: {type(exc).__name__}: {exc}")
