"""Face crops of concurrent requests onto shared classifier calls: a queue and one worker thread.

The worker takes the first waiting request's crops, then collects more requests' crops until it has
``max_batch`` crops, or until ``max_wait`` seconds passed, or at once when no other request is on its way
(``others_coming`` says whether one is being decoded or detected now): a lone request does not wait.
Each request gets its own rows of the shared call's output through a ``concurrent.futures.Future``.
"""

import concurrent.futures
import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


class _Job:
    def __init__(self, crops: Sequence[np.ndarray]):
        self.crops = list(crops)
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class CropBatcher:
    """``submit(crops)`` -> a Future of the classifier's probabilities for those crops ([N, labels])."""

    def __init__(
        self,
        predict: Callable[[list[np.ndarray]], Any],
        max_batch: int = 32,
        max_wait: float = 0.005,
        others_coming: Callable[[], bool] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ):
        self.predict = predict
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait))
        self.others_coming = others_coming or (lambda: False)
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fer-edge-serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, crops: Sequence[np.ndarray]) -> concurrent.futures.Future:
        job = _Job(crops)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, count = [first], len(first.crops)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self.others_coming():
                    break
                try:
                    job = self._queue.get(timeout=min(left, 0.001))
                except queue.Empty:
                    continue
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.crops)
        return jobs, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            crops = [c for job in jobs for c in job.crops]
            try:
                probs = np.asarray(self.predict(crops))
            except Exception as exc:  # the requests of this call get the error; the worker goes on
                log.exception("classifier call of %d crops failed", len(crops))
                for job in jobs:
                    job.future.set_exception(exc)
            else:
                if self.on_batch is not None:
                    self.on_batch(len(crops), len(jobs))
                start = 0
                for job in jobs:
                    job.future.set_result(probs[start : start + len(job.crops)])
                    start += len(job.crops)
            if stop:
                return
