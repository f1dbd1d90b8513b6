"""The inference behind the API: the project's one pipeline (``edge.pipeline.FaceEmotionPipeline``), its
detection in worker threads, its classifier calls shared by concurrent requests (``batching``)."""

import asyncio
import queue
import threading
from typing import Any

import numpy as np

from edge.agent.loop import model_version_of
from edge.pipeline import FaceEmotionPipeline

from .batching import CropBatcher
from .decode import decode_image
from .metrics import ServeMetrics


class EmotionEngine:
    """``await emotions(bytes)``: the faces ``fer-edge image`` prints for that image, and the same values."""

    def __init__(
        self,
        pipeline: FaceEmotionPipeline,
        metrics: ServeMetrics,
        max_pixels: int,
        max_batch: int = 32,
        max_wait: float = 0.005,
        detectors: int = 1,
    ):
        self.pipeline = pipeline
        self.metrics = metrics
        self.max_pixels = max_pixels
        # detectors are not assumed thread-safe: each is used by one thread at a time
        self._detectors: queue.Queue = queue.Queue()
        self._detectors.put(pipeline.detector)
        for _ in range(max(1, int(detectors)) - 1):
            self._detectors.put(pipeline.new_detector())
        self._count_lock = threading.Lock()
        self._coming = 0  # requests being decoded or detected: the batcher waits for them
        self.batcher = CropBatcher(
            pipeline.classifier.predict,
            max_batch=max_batch,
            max_wait=max_wait,
            others_coming=lambda: self._coming > 0,
            on_batch=metrics.batch,
        )
        meta = pipeline.classifier.meta.get("model", {})
        self.model = {
            "id": str(pipeline.classifier.model_id),
            "version": model_version_of(meta),
            "runtime": str(pipeline.classifier.runtime),
            "labels": list(pipeline.labels),
            "detector": str(pipeline.detector.name),
        }

    def _prepare(self, data: bytes) -> tuple[list[Any], list[np.ndarray]]:
        with self._count_lock:
            self._coming += 1
        try:
            image = decode_image(data, self.max_pixels)
            detector = self._detectors.get()
            try:
                return self.pipeline.find_faces(image, detector)
            finally:
                self._detectors.put(detector)
        finally:
            with self._count_lock:
                self._coming -= 1

    async def emotions(self, data: bytes) -> list[dict[str, Any]]:
        from starlette.concurrency import run_in_threadpool

        detections, crops = await run_in_threadpool(self._prepare, data)
        if not crops:
            return []
        probs = await asyncio.wrap_future(self.batcher.submit(crops))
        faces = self.pipeline.describe(detections, probs)
        self.metrics.add_faces(len(faces))
        return faces

    def close(self) -> None:
        self.batcher.close()
