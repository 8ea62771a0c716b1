"""A real GCS emulator (``gcp-storage-emulator``, in memory) on a free port, for the session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ductwork.testing.servers import free_port, gcs_emulator


@pytest.fixture(scope="session")
def gcs_url() -> Iterator[str]:
    """The session's emulator; stopped by its PID and waited for until it exits."""
    with gcs_emulator() as server:
        yield server.url


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


SIGNER = "signer@ductwork-test.iam.gserviceaccount.com"


@pytest.fixture(scope="session")
def service_account_file(tmp_path_factory) -> Path:
    """A service-account key file made now (a fresh RSA key): what signs V4 URLs offline."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "ductwork-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": SIGNER,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("gcs-sa") / "signer.json"
    path.write_text(json.dumps(info))
    return path
