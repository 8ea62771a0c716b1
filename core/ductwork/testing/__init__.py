"""The conformance kit: one pytest suite per interface, shipped with ductwork.

A provider's test subclasses the suite and supplies one fixture, ``provider``, that yields an
opened instance (``NotifierSuite`` also needs ``outbox``: what the server received)::

    import pytest
    from ductwork.testing import StorageSuite

    class TestS3Storage(StorageSuite):
        @pytest.fixture
        async def provider(self, s3_server):
            async with S3Storage.from_options(endpoint_url=s3_server, bucket="t") as p:
                yield p

The suites read the provider's declared capabilities: what is declared is tested, and what is
not must fail with :class:`ductwork.UnsupportedError`. Install ``ductwork[testing]`` (pytest,
pytest-asyncio, hypothesis) and run them with pytest-asyncio's ``asyncio_mode = "auto"`` (or
declare the fixtures with ``pytest_asyncio.fixture``).
"""

from ductwork.testing.broker import BrokerSuite
from ductwork.testing.cache import CacheSuite
from ductwork.testing.database import DatabaseSuite
from ductwork.testing.graph import GraphSuite
from ductwork.testing.notifier import NotifierSuite
from ductwork.testing.storage import StorageSuite

__all__ = [
    "BrokerSuite",
    "CacheSuite",
    "DatabaseSuite",
    "GraphSuite",
    "NotifierSuite",
    "StorageSuite",
]
