"""JetStream publishes with their acknowledgements read on one wildcard inbox.

A JetStream publish is a core publish with a reply subject; the stream that stores the
message answers on it with a PubAck (``{"stream": ..., "seq": ...}``) or an error
(``{"error": {"code": ..., "err_code": ..., "description": ...}}``), and the server answers
a ``503`` status message when no stream takes the subject. nats-py's ``publish_async`` does
the same with a semaphore, ``wait_for`` and a random token per message; on the platform's
hot path (four publishes per job) this keeps only what the runtime needs: a counter token
under one subscribed prefix and a future per message. Bounded by the callers (a request
handler, a worker slot), not by a semaphore.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, NamedTuple

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError
from nats.nuid import NUID


class PubAck(NamedTuple):
    """A stream's answer to a publish: where the message is stored, and whether it was
    dropped as a duplicate of an earlier one with the same ``Nats-Msg-Id`` (then ``seq``
    is the earlier message's)."""

    seq: int
    duplicate: bool = False


class AckedPublisher:
    """Publishes to JetStream; each call returns the future of the message's :class:`PubAck`.

    The future fails with ``APIError`` (the stream refused the message) or
    ``NoStreamResponseError`` (no stream takes the subject). Nothing times it out here:
    the holder awaits it with a deadline and cancels it, which forgets the token.
    """

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.prefix = f"_INBOX.{NUID().next().decode()}."
        self._futures: dict[str, asyncio.Future[PubAck]] = {}
        self._counter = 0
        self._sub: Any = None
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        """Publishes whose acknowledgement has not come (nor been given up on) yet."""
        return len(self._futures)

    async def _subscribe(self) -> None:
        async with self._lock:
            if self._sub is None:
                self._sub = await self.nc.subscribe(self.prefix + "*", cb=self._on_reply)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[PubAck]:
        """Send one message; the future of its acknowledgement (see the class docstring).

        The message is in the connection's outgoing buffer when this returns, so whatever
        is published after it on the same connection reaches the server after it.
        """
        if self._sub is None:
            await self._subscribe()
        self._counter += 1
        token = str(self._counter)
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        future.add_done_callback(lambda _f: self._futures.pop(token, None))
        try:
            await self.nc.publish(subject, payload, reply=self.prefix + token, headers=headers)
        except BaseException:
            future.cancel()
            raise
        return future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[len(self.prefix) :], None)
        if future is None or future.done():
            return  # given up on (timed out, cancelled)
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(NoStreamResponseError())
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            future.set_exception(APIError(description=f"not a PubAck: {msg.data[:200]!r}"))
            return
        if "error" not in answer:
            future.set_result(PubAck(int(answer["seq"]), bool(answer.get("duplicate"))))
            return
        try:
            APIError.from_error(answer["error"])  # raises the error's own subclass
        except APIError as e:
            future.set_exception(e)

    async def close(self) -> None:
        """Cancel what is outstanding and unsubscribe."""
        for future in list(self._futures.values()):
            future.cancel()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is already closed
                pass
