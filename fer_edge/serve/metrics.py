"""The service's metrics, written as Prometheus text by hand (no client library): counters and histograms."""

import threading
from typing import Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative buckets, sum and count of observed values."""

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [
            '{}_bucket{{{}{}le="{}"}} {}'.format(name, labels, sep, _number(bound), n)
            for bound, n in zip(self.buckets, self.counts)
        ]
        out.append('{}_bucket{{{}{}le="+Inf"}} {}'.format(name, labels, sep, self.count))
        suffix = "{{{}}}".format(labels) if labels else ""
        out.append("{}_sum{} {}".format(name, suffix, _number(self.total)))
        out.append("{}_count{} {}".format(name, suffix, self.count))
        return out


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class ServeMetrics:
    """What /metrics shows: requests by route and status, request latency, faces, classifier batch sizes,
    requests refused by the limits. Thread-safe (the batching thread and the event loop both write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_crops = Histogram(BATCH_BUCKETS)
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.faces = 0
        self.refused: dict[str, int] = {}
        self.in_flight = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, int(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            if route == "/v1/emotions":
                self.latency.observe(seconds)

    def add_faces(self, count: int) -> None:
        with self._lock:
            self.faces += int(count)

    def batch(self, crops: int, requests: int) -> None:
        """One classifier call: ``crops`` face crops from ``requests`` requests."""
        with self._lock:
            self.batch_crops.observe(crops)
            self.batch_requests.observe(requests)

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1

    def text(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP fer_edge_serve_requests_total HTTP requests answered, by route and status.",
                "# TYPE fer_edge_serve_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                lines.append('fer_edge_serve_requests_total{{route="{}",status="{}"}} {}'.format(route, status, n))
            lines += [
                "# HELP fer_edge_serve_request_seconds Latency of POST /v1/emotions, body read to answer.",
                "# TYPE fer_edge_serve_request_seconds histogram",
            ]
            lines += self.latency.lines("fer_edge_serve_request_seconds")
            lines += [
                "# HELP fer_edge_serve_faces_total Faces found and classified.",
                "# TYPE fer_edge_serve_faces_total counter",
                "fer_edge_serve_faces_total {}".format(self.faces),
                "# HELP fer_edge_serve_batch_crops Face crops per classifier call.",
                "# TYPE fer_edge_serve_batch_crops histogram",
            ]
            lines += self.batch_crops.lines("fer_edge_serve_batch_crops")
            lines += [
                "# HELP fer_edge_serve_batch_requests Requests sharing one classifier call.",
                "# TYPE fer_edge_serve_batch_requests histogram",
            ]
            lines += self.batch_requests.lines("fer_edge_serve_batch_requests")
            lines += [
                "# HELP fer_edge_serve_refused_total Requests refused by a limit (busy, queue_full, too_large).",
                "# TYPE fer_edge_serve_refused_total counter",
            ]
            for reason, n in sorted(self.refused.items()):
                lines.append('fer_edge_serve_refused_total{{reason="{}"}} {}'.format(reason, n))
            lines += [
                "# HELP fer_edge_serve_in_flight Requests being processed or waiting now.",
                "# TYPE fer_edge_serve_in_flight gauge",
                "fer_edge_serve_in_flight {}".format(self.in_flight),
            ]
            return "\n".join(lines) + "\n"
