"""A consumer of a Redis Streams consumer group: what ``RedisBroker.subscribe`` returns.

How a delivery's life maps onto the group's pending entries list (PEL):

* new entries come from ``XREADGROUP … >`` (attempt 1), a batch of up to ``prefetch`` at once;
* ack is ``XACK``;
* nack is ``XCLAIM … JUSTID IDLE n`` back to this consumer: the delivery count is left alone
  and the idle time is set so that the entry becomes claimable (idle >= ``claim_idle``) at once,
  or ``delay`` seconds later;
* every consumer of the group looks for claimable entries with ``XAUTOCLAIM`` (a Lua script
  that also reads each claimed entry's delivery count, which is the attempt) when it starts
  receiving, after its own nack, and every ``claim_interval`` seconds while it waits. Entries of
  a consumer that died without closing become claimable after ``claim_idle`` ms;
* close moves this consumer's pending entries to the ``ductwork:returned`` consumer, marked
  claimable at once (delayed nacks keep their delay), then deletes this consumer — one Lua
  script, so no entry is dropped by ``XGROUP DELCONSUMER``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ductwork.providers.broker import Delivery, Message, Subscription
from redis import exceptions as rex
from redis.asyncio import Redis

if TYPE_CHECKING:
    from ductwork_redis.broker import RedisBroker

__all__ = ["CLAIM", "RETURN", "RedisSubscription", "decode"]

RETURNED_CONSUMER = "ductwork:returned"
# Idle time that marks an entry as returned to the group: past any sensible claim_idle.
RETURNED_IDLE_MS = 10**12
_FAILURES = (rex.RedisError, OSError)

# KEYS[1] stream; ARGV group, consumer, min idle ms, cursor, count.
# Returns {next cursor, entries, delivery count of each entry}.
CLAIM = """
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local entries, counts = {}, {}
for _, e in ipairs(r[2]) do
  if e and e[2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    entries[#entries + 1] = e
    counts[#counts + 1] = p[1] and p[1][4] or 1
  end
end
return {r[1], entries, counts}
"""

# KEYS[1] stream; ARGV group, consumer, returned consumer, returned idle ms, ids nacked with a
# delay (they keep their idle time). Moves the consumer's PEL, then deletes the consumer.
RETURN = """
local keep = {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
local start = '-'
while true do
  local batch = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', 100, ARGV[2])
  if #batch == 0 then break end
  for _, p in ipairs(batch) do
    local idle = ARGV[4]
    if keep[p[1]] then idle = p[3] end
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, p[1], 'IDLE', idle, 'JUSTID')
  end
  start = '(' .. batch[#batch][1]
end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""


def decode(topic: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
    """A message from a stream entry's fields (``body``, ``key``, ``h:<header>``)."""
    body = b""
    key: str | None = None
    headers: dict[str, str] = {}
    for name, value in fields.items():
        if name == b"body":
            body = value
        elif name == b"key":
            key = value.decode(errors="replace")
        elif name.startswith(b"h:"):
            headers[name[2:].decode(errors="replace")] = value.decode(errors="replace")
    return Message(topic, body, key, headers, entry_id.decode())


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class _RedisDelivery(Delivery):
    def __init__(
        self, sub: RedisSubscription, entry_id: bytes, fields: dict[bytes, bytes], attempt: int
    ) -> None:
        super().__init__(decode(sub.topic, entry_id, fields), attempt)
        self._sub = sub
        self._id = entry_id
        self._fields = fields

    async def _ack(self) -> None:
        await self._sub.ack(self._id)

    async def _nack(self, delay: float) -> None:
        await self._sub.nack(self._id, self._fields, self.attempt, delay)


class RedisSubscription(Subscription):
    """One consumer (unique name) in a group on one stream."""

    def __init__(
        self,
        broker: RedisBroker,
        topic: str,
        group: str,
        consumer: str,
        max_deliveries: int | None,
        reader: Redis,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.stream = broker.stream(topic)
        self.group = group
        self.consumer = consumer
        self.max_deliveries = max_deliveries
        self._reader = reader  # its own connection: XREADGROUP BLOCK would hold a pooled one
        opts = broker.options
        self._prefetch = opts.prefetch
        self._claim_idle = opts.claim_idle
        self._interval = opts.claim_interval
        timeout = opts.socket_timeout
        self._block_cap = self._interval if timeout is None else min(self._interval, timeout / 2)
        self._buffer: deque[tuple[bytes, dict[bytes, bytes], int]] = deque()
        self._delayed: dict[bytes, float] = {}  # entry nacked with a delay -> when it is due
        self._next_claim = 0.0  # claim as soon as receiving starts
        self._cursor = b"0-0"

    async def receive(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            if self._buffer:
                entry_id, fields, attempt = self._buffer.popleft()
                return _RedisDelivery(self, entry_id, fields, attempt)
            now = time.monotonic()
            if now >= self._next_claim:
                self._next_claim = now + self._interval
                await self._claim()
                continue
            wait = min(self._next_claim - now, self._block_cap)
            if deadline is not None:
                wait = min(wait, deadline - now)
            await self._read(int(wait * 1000))
            if not self._buffer and deadline is not None and time.monotonic() >= deadline:
                return None
        return None

    async def _read(self, block_ms: int) -> None:
        try:
            # BLOCK 0 would wait forever: below 1 ms, do not block at all
            reply: Any = await self._reader.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self._prefetch,
                block=block_ms if block_ms >= 1 else None,
            )
        except Exception as exc:
            # close() cut the connection under the read: blocked, or still connecting, where
            # redis-py fails with whatever its half-torn connection raises (AttributeError)
            if self.closed:
                return
            if isinstance(exc, _FAILURES):
                raise self.broker.fail(exc, f"XREADGROUP on {self.stream!r}") from exc
            raise
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                if fields:  # an entry deleted while pending comes back empty
                    self._buffer.append((entry_id, fields, 1))

    async def _claim(self) -> None:
        """Take over claimable entries (returned, nacked, or idle past ``claim_idle``)."""
        cursor = self._cursor
        for _ in range(10):  # bounded work per round; the cursor carries on next round
            try:
                reply: Any = await self.broker.claim_script(
                    keys=[self.stream],
                    args=[self.group, self.consumer, self._claim_idle, cursor, self._prefetch],
                )
            except _FAILURES as exc:
                raise self.broker.fail(exc, f"XAUTOCLAIM on {self.stream!r}") from exc
            cursor, entries, counts = reply
            buffered = {entry[0] for entry in self._buffer}
            for (entry_id, flat), count in zip(entries, counts, strict=True):
                self._delayed.pop(entry_id, None)
                if entry_id in buffered:
                    continue
                fields = _pairs(flat)
                if self.max_deliveries is not None and count > self.max_deliveries:
                    # its last consumer died with it: it has had all its deliveries
                    await self.broker.dead_letter(self, entry_id, fields, count - 1)
                    continue
                self._buffer.append((entry_id, fields, int(count)))
            if self._buffer or cursor == b"0-0":
                break
        self._cursor = cursor

    async def ack(self, entry_id: bytes) -> None:
        """``XACK`` one entry."""
        try:
            await self.broker.redis.xack(self.stream, self.group, entry_id)
        except _FAILURES as exc:
            raise self.broker.fail(exc, f"XACK on {self.stream!r}") from exc

    async def nack(
        self, entry_id: bytes, fields: dict[bytes, bytes], attempt: int, delay: float
    ) -> None:
        """Make the entry claimable again (after ``delay``), or dead-letter it."""
        if self.max_deliveries is not None and attempt >= self.max_deliveries:
            await self.broker.dead_letter(self, entry_id, fields, attempt)
            return
        delay_ms = min(max(0, int(delay * 1000)), self._claim_idle)  # capped at claim_idle
        now = time.monotonic()
        # claimable once idle >= claim_idle; a returned entry is claimable at once
        idle = self._claim_idle - delay_ms if delay_ms else RETURNED_IDLE_MS
        # after close() the entry goes to the returned consumer, not to a deleted one
        owner = RETURNED_CONSUMER if self.closed else self.consumer
        try:
            await self.broker.redis.xclaim(
                self.stream, self.group, owner, 0, [entry_id], idle=idle, justid=True
            )
        except _FAILURES as exc:
            raise self.broker.fail(exc, f"XCLAIM on {self.stream!r}") from exc
        # look for it as soon as it is due (a few ms late, so the server agrees it is idle enough)
        due = now + (delay_ms + 5) / 1000 if delay_ms else now
        if delay_ms and not self.closed:
            self._delayed = {i: d for i, d in self._delayed.items() if d > now}
            self._delayed[entry_id] = due
        self._next_claim = min(self._next_claim, due)
        self._cursor = b"0-0"

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._buffer.clear()
        try:
            await self._reader.aclose()  # interrupts a blocked read; its entries are in the PEL
            await self.broker.return_script(
                keys=[self.stream],
                args=[
                    self.group,
                    self.consumer,
                    RETURNED_CONSUMER,
                    RETURNED_IDLE_MS,
                    *(i for i, due in self._delayed.items() if due > time.monotonic()),
                ],
            )
        except rex.ResponseError as exc:
            if "NOGROUP" not in str(exc):  # stream or group deleted meanwhile: nothing to return
                raise self.broker.fail(exc, f"closing consumer of {self.stream!r}") from exc
        except _FAILURES as exc:
            raise self.broker.fail(exc, f"closing consumer of {self.stream!r}") from exc
