"""The rabbitmq broker passes the broker conformance suite on quorum and on classic queues."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ProviderError,
    ValidationError,
)
from ductwork.plugins import get_registry
from ductwork.providers import ProviderContext
from ductwork.providers.broker import DEAD_GROUP
from ductwork.testing import BrokerSuite
from ductwork.testing.broker import Restartable
from ductwork.testing.system_servers import rabbitmq_node
from ductwork_rabbitmq.broker import RabbitMQBroker, RabbitMQBrokerOptions
from pydantic import ValidationError as PydanticValidationError

CONTEXT = ProviderContext(resource="brokers.bus", env="test", provider="rabbitmq")
EXPIRES = "120s"  # test queues delete themselves once unused


def make(exchange: str, **options: object) -> RabbitMQBroker:
    options = {"host": "127.0.0.1", "exchange": exchange, "queue_expires": EXPIRES, **options}
    return RabbitMQBroker.from_options(CONTEXT, **options)


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


class TestRabbitMQBroker(BrokerSuite):
    @pytest.fixture
    async def provider(self, exchange):
        async with make(exchange) as broker:
            yield broker

    @pytest.fixture
    async def restartable(self, exchange):
        # A private node (quorum queues on disk), killed and restarted on the same data.
        with rabbitmq_node() as node:
            async with make(exchange, port=node.port, publish_timeout=3.0) as broker:
                yield Restartable(broker, node, publish_bound=3.0, settle=node.settle)


class TestRabbitMQBrokerClassic(BrokerSuite):
    @pytest.fixture
    async def provider(self, exchange):
        async with make(f"{exchange}-classic", queue_type="classic") as broker:
            yield broker


@pytest.fixture(params=["quorum", "classic"])
async def broker(request, exchange):
    async with make(f"{exchange}-{request.param}", queue_type=request.param) as b:
        yield b


def test_registered_through_the_entry_point():
    entry = get_registry().entries[("broker", "rabbitmq")]
    assert entry.distribution == "ductwork-rabbitmq"
    assert get_registry().get("broker", "rabbitmq") is RabbitMQBroker


# -- errors -------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_names_where_and_hides_the_password():
    port = _closed_port()
    broker = RabbitMQBroker.from_options(
        CONTEXT, host="127.0.0.1", port=port, password="s3cret-pw", connect_timeout=3
    )
    with pytest.raises(ConnectionFailedError) as info:
        await broker.open()
    text = str(info.value)
    for part in ("brokers.bus", "test", "rabbitmq", f"amqp://127.0.0.1:{port}/"):
        assert part in text
    assert "s3cret-pw" not in text
    assert info.value.__cause__ is not None


async def test_connection_refused_with_a_url_hides_the_password():
    port = _closed_port()
    url = f"amqp://guest:s3cret-pw@127.0.0.1:{port}/"
    broker = RabbitMQBroker.from_options(CONTEXT, url=url, connect_timeout=3)
    assert broker.endpoint == f"amqp://127.0.0.1:{port}/"
    with pytest.raises(ConnectionFailedError) as info:
        await broker.open()
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(broker.options)


async def test_bad_credentials_raise_authentication_error(rabbitmq):
    broker = RabbitMQBroker.from_options(CONTEXT, host="127.0.0.1", password="wr0ng-pw")
    with pytest.raises(AuthenticationError) as info:
        await broker.open()
    assert "wr0ng-pw" not in str(info.value)
    assert "amqp://127.0.0.1:5672/" in str(info.value)


def test_options_refuse_unknown_keys():
    with pytest.raises(PydanticValidationError, match="bucket"):
        RabbitMQBrokerOptions(bucket="x")


def test_options_take_a_url_or_fields_not_both():
    with pytest.raises(PydanticValidationError, match="either url or host"):
        RabbitMQBrokerOptions(url="amqp://guest:guest@localhost/", host="other")
    with pytest.raises(PydanticValidationError, match="amqp://"):
        RabbitMQBrokerOptions(url="http://localhost/")
    opts = RabbitMQBrokerOptions(queue_type="classic", publish_timeout="500ms")
    assert opts.publish_timeout == 0.5


def test_endpoint_names_the_virtual_host():
    broker = RabbitMQBroker.from_options(CONTEXT, host="mq", virtual_host="shop/prd", ssl=True)
    assert broker.endpoint == "amqps://mq:5672/shop%2Fprd"


async def test_publish_before_open_is_a_clear_error(exchange):
    with pytest.raises(ProviderError, match="not open"):
        await make(exchange).publish("t", b"x")


async def test_mandatory_publish_with_no_group_bound_raises(exchange, topic):
    async with make(exchange, mandatory=True) as broker:
        with pytest.raises(ProviderError, match="no queue is bound"):
            await broker.publish(topic, b"lost")
        async with await broker.subscribe(topic, "g") as sub:
            await broker.publish(topic, b"kept")
            delivery = await sub.receive(timeout=5)
            assert delivery is not None
            await delivery.ack()


async def test_unmandatory_publish_with_no_group_bound_is_confirmed(exchange, topic):
    async with make(exchange) as broker:
        assert await broker.publish(topic, b"nobody listens")


async def test_a_group_queue_of_another_type_is_a_clear_error(exchange, topic):
    async with make(exchange) as quorum, make(exchange, queue_type="classic") as classic:
        await (await quorum.subscribe(topic, "g")).close()
        with pytest.raises(ProviderError, match="other settings"):
            await classic.subscribe(topic, "g")
        # the shared connection is still usable afterwards
        async with await classic.subscribe(topic, "other") as sub:
            await classic.publish(topic, b"x")
            assert await sub.receive(timeout=5) is not None


async def test_unknown_subscribe_options_are_refused(broker, topic):
    with pytest.raises(ValidationError, match="colour"):
        await broker.subscribe(topic, "g", colour="blue")
    with pytest.raises(ValidationError, match="max_deliveries"):
        await broker.subscribe(topic, "g", max_deliveries=0)


# -- provider-specific behaviour ----------------------------------------------------------


async def test_message_id_and_headers_arrive_without_bookkeeping(broker, topic):
    async with await broker.subscribe(topic, "g") as sub:
        message_id = await broker.publish(topic, b"x", key="k", headers={"a": "b"})
        delivery = await sub.receive(timeout=5)
        assert delivery is not None
        assert delivery.message.id == message_id
        assert dict(delivery.message.headers) == {"a": "b"}
        await delivery.nack(delay=0.05)
        again = await sub.receive(timeout=5)
        assert again is not None
        assert again.message.id == message_id
        assert again.message.key == "k"
        assert again.message.topic == topic
        assert dict(again.message.headers) == {"a": "b"}
        assert again.attempt == 2
        await again.ack()


async def test_a_closed_subscription_whose_consumer_lives_on_holds_no_message(broker, topic):
    # After a broker restart, aio-pika's robust channel can restore the consumer of a
    # subscription that was closed while its recovery ran. Such a consumer must hand what it
    # gets back to the group, not keep it unacked for as long as the connection lives.
    ghost = await broker.subscribe(topic, "g")
    ghost.stop()  # closed as far as ductwork knows; its channel and consumer still live
    async with await broker.subscribe(topic, "g") as sub:
        sent = {await broker.publish(topic, str(i).encode()) for i in range(20)}
        got = set()
        while got != sent:
            delivery = await sub.receive(timeout=10)
            assert delivery is not None, f"{len(sent - got)} of 20 never came"
            got.add(delivery.message.id)
            await delivery.ack()
    await ghost.close()


async def test_attempt_counts_nacks_and_delays_alike(broker, topic):
    async with await broker.subscribe(topic, "g") as sub:
        await broker.publish(topic, b"x")
        for attempt, delay in ((1, 0.0), (2, 0.05), (3, 0.0), (4, 0.05), (5, 0.0)):
            delivery = await sub.receive(timeout=5)
            assert delivery is not None
            assert delivery.attempt == attempt
            if attempt == 5:
                await delivery.ack()
            else:
                await delivery.nack(delay=delay)
        assert await sub.receive(timeout=0.3) is None


async def test_dead_letter_keeps_key_headers_and_counts(broker, topic):
    async with await broker.subscribe(topic, "g", max_deliveries=2) as sub:
        await broker.publish(topic, b"poison", key="p", headers={"a": "b"})
        for _ in range(2):
            delivery = await sub.receive(timeout=5)
            assert delivery is not None
            await delivery.nack(delay=0.05)
    # nobody read the dead-letter topic before: its group kept the letter anyway
    async with await broker.subscribe(broker.dead_letter_topic(topic), DEAD_GROUP) as dead:
        letter = await dead.receive(timeout=5)
        assert letter is not None
        assert letter.message.body == b"poison"
        assert letter.message.key == "p"
        assert letter.message.topic == broker.dead_letter_topic(topic)
        assert letter.message.headers["a"] == "b"
        assert letter.message.headers["x-ductwork-dead-letter-from"] == topic
        assert letter.message.headers["x-ductwork-deliveries"] == "2"
        assert letter.attempt == 1
        await letter.ack()


async def test_a_message_whose_consumers_keep_leaving_is_dead_lettered(exchange, topic):
    # quorum queues count deliveries lost with their consumer; classic ones cannot
    async with make(exchange) as broker:
        for _ in range(2):
            sub = await broker.subscribe(topic, "g", max_deliveries=2)
            if _ == 0:
                await broker.publish(topic, b"crashes its consumer")
            assert await sub.receive(timeout=5) is not None
            await sub.close()  # as if the consumer died mid-handling
        async with await broker.subscribe(topic, "g", max_deliveries=2) as sub:
            assert await sub.receive(timeout=0.5) is None
        async with await broker.subscribe(broker.dead_letter_topic(topic), DEAD_GROUP) as dead:
            letter = await dead.receive(timeout=5)
            assert letter is not None
            assert letter.message.headers["x-ductwork-deliveries"] == "2"
            await letter.ack()


async def test_topics_and_groups_with_colons_get_distinct_queues(broker):
    a = broker.queue_name("a:b", "c")
    b = broker.queue_name("a", "b:c")
    assert a != b
    long = broker.queue_name("t" * 300, "g")
    assert len(long.encode()) <= 200


async def test_ping_and_native(broker):
    await broker.ping()
    assert not broker.native.is_closed


async def test_closing_the_broker_wakes_receivers(exchange, topic):
    broker = make(exchange)
    await broker.open()
    sub = await broker.subscribe(topic, "g")
    waiting = asyncio.create_task(sub.receive())
    await asyncio.sleep(0.05)
    await broker.close()
    assert await asyncio.wait_for(waiting, 5) is None


def _drop_connection(name: str) -> None:
    """Make RabbitMQ close the connection named ``name``, as a server restart would."""
    out = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    marker = f'{{"connection_name","{name}"}}'
    pids = [line.split("\t", 1)[0] for line in out.splitlines() if marker in line]
    assert len(pids) == 1, f"connection {name!r} not found"
    subprocess.run(
        ["rabbitmqctl", "close_connection", pids[0], "test"],
        check=True,
        timeout=30,
        capture_output=True,
    )


async def test_reconnects_and_redelivers_after_the_connection_drops(exchange, topic):
    resource = f"brokers.rc{uuid.uuid4().hex[:8]}"
    context = ProviderContext(resource=resource, env="test", provider="rabbitmq")
    broker = RabbitMQBroker.from_options(
        context, host="127.0.0.1", exchange=exchange, queue_expires=EXPIRES, reconnect_interval=0.2
    )
    async with broker, await broker.subscribe(topic, "g") as sub:
        await broker.publish(topic, b"before")
        held = await sub.receive(timeout=5)
        assert held is not None
        await asyncio.to_thread(_drop_connection, f"ductwork {resource} (test)")
        # A publish racing the drop may be refused (documented: publishing while the connection
        # is down raises); a producer retries it, and the robust connection comes back.
        for attempt in range(50):
            try:
                await broker.publish(topic, b"after")
                break
            except ConnectionFailedError:
                assert attempt < 49, "the connection never came back"
                await asyncio.sleep(0.1)
        with pytest.raises(ProviderError):
            await held.ack()  # its channel is gone: the group has it back
        got = set()
        while len(got) < 2:
            delivery = await sub.receive(timeout=10)
            assert delivery is not None
            got.add(delivery.message.body)
            await delivery.ack()
        assert got == {b"before", b"after"}


async def test_events_through_a_product_config(tmp_path, exchange):
    (tmp_path / "ductwork.yaml").write_text(
        f"""
product: shop
default_env: prd
environments: [prd]
brokers:
  bus:
    prd:
      provider: rabbitmq
      url: "amqp://guest:guest@127.0.0.1:5672/"
      exchange: {exchange}
      queue_expires: 120s
    topics: {{user_created: user.created.{uuid.uuid4().hex[:8]}}}
    max_deliveries: 2
    retry_delay: 10ms
"""
    )
    seen = []

    async def handler(event):
        seen.append(event)
        if event.attempt == 1:
            raise RuntimeError("first try fails")

    async with Ductwork(Config.load(tmp_path / "ductwork.yaml"), env="prd") as dw:
        ready = asyncio.Event()
        task = asyncio.create_task(
            dw.events.subscribe("bus", "user_created", handler, group="mail", limit=1, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 10)
        await dw.events.publish("bus", "user_created", {"id": 7}, key="u7")
        assert await asyncio.wait_for(task, 15) == 1
    assert [e.attempt for e in seen] == [1, 2]
    assert seen[1].key == "u7"
