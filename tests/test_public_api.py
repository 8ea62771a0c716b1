"""The curated public API, and a cheap import."""

from __future__ import annotations

import subprocess
import sys

import ductwork

EXPECTED = [
    "AllProvidersFailedError",
    "AuthenticationError",
    "Config",
    "ConfigError",
    "ConnectionFailedError",
    "DecodeError",
    "Ductwork",
    "DuctworkError",
    "Event",
    "FeatureFailedError",
    "HTTPStatusError",
    "InvalidKeyError",
    "MissingDependencyError",
    "NotFoundError",
    "PluginError",
    "ProviderError",
    "RateLimitedError",
    "ReferenceResolutionError",
    "RefreshReuseError",
    "SessionExpiredError",
    "SessionInvalidError",
    "SessionRevokedError",
    "SyncDuctwork",
    "TooManyRowsError",
    "UnknownProviderError",
    "UnsupportedError",
    "ValidationError",
    "WebhookVerificationError",
    "__version__",
    "feature",
    "function",
    "hookimpl",
]
SDKS = [
    "boto3",
    "botocore",
    "google.cloud",
    "aio_pika",
    "confluent_kafka",
    "redis",
    "sqlalchemy",
    "asyncpg",
    "aiomysql",
    "aiosmtplib",
    "nats",
    "pydantic",
    "yaml",
    "click",
    "rich",
    "httpx",
]


def test_exported_names_are_exactly_the_curated_ones():
    assert ductwork.__all__ == sorted(EXPECTED)
    for name in ductwork.__all__:
        assert getattr(ductwork, name) is not None


def test_webhooks_module_is_curated():
    import ductwork.webhooks

    assert ductwork.webhooks.__all__ == ["generate_secret", "secret_key", "sign", "verify"]


def test_every_error_derives_from_the_root():
    for name in ductwork.__all__:
        value = getattr(ductwork, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, ductwork.DuctworkError)


def test_import_loads_no_provider_sdk():
    code = (
        "import sys, ductwork; "
        f"print([m for m in {SDKS!r} if m in sys.modules or any(k.startswith(m + '.') "
        "for k in sys.modules)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_is_cheap():
    # -X importtime reports the cumulative microseconds of the top-level import deterministically
    # enough: it counts import work only, not interpreter start-up.
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ductwork"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in out.stderr.splitlines() if ln.rstrip().endswith("| ductwork"))
    cumulative_us = int(line.split("|")[1])
    assert cumulative_us < 150_000, line
