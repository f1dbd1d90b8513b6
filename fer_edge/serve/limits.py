"""The service's limits, and the gate that bounds concurrency and the queue in front of it."""

import asyncio

MB = 1024 * 1024


class Limits:
    """``max_body``: bytes of a request body; ``max_pixels``: width x height of a decoded image;
    ``concurrency``: requests processed at once; ``queue``: requests waiting beyond those (more: 503);
    ``queue_timeout``: seconds one may wait before it is answered 503; ``body_timeout``: seconds a client may
    take to send its body (a stalled upload would hold a slot), beyond: 408."""

    def __init__(
        self,
        max_body: int = 10 * MB,
        max_pixels: int = 40_000_000,
        concurrency: int = 32,
        queue: int = 64,
        queue_timeout: float = 10.0,
        body_timeout: float = 30.0,
    ):
        self.max_body = int(max_body)
        self.max_pixels = int(max_pixels)
        self.concurrency = max(1, int(concurrency))
        self.queue = max(0, int(queue))
        self.queue_timeout = float(queue_timeout)
        self.body_timeout = float(body_timeout)


class Busy(Exception):
    """The gate refused a request: ``reason`` (queue_full, queue_timeout), ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int = 1):
        Exception.__init__(self, reason)
        self.reason = reason
        self.retry_after = retry_after


class AdmissionGate:
    """``async with gate:`` admits up to ``concurrency`` requests at once and lets ``queue`` more wait;
    beyond, or after ``queue_timeout`` seconds of waiting, it raises ``Busy``. Used from the event loop only."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.concurrency)
        self.waiting = 0
        self.active = 0

    async def __aenter__(self) -> "AdmissionGate":
        if self._slots.locked():
            if self.waiting >= self.limits.queue:
                raise Busy("queue_full")
            self.waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.limits.queue_timeout)
            except asyncio.TimeoutError:
                raise Busy("queue_timeout") from None
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        self.active += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1
        self._slots.release()
