"""The live view: what the camera sees, annotated, in a browser while aiming it (a frame sink).

``LiveView`` is handed every processed frame by the agent loop (``write(frame, faces)``) and
serves over HTTP (stdlib ``http.server`` with a thread per connection):

* ``/``: a small self-contained page (``edge.view.page``) with the stream, the faces and
  emotions, fps and the delivery state;
* ``/stream.mjpg``: ``multipart/x-mixed-replace`` JPEGs of the annotated frames
  (``edge.view.annotate.draw``); each part carries ``X-Frame`` (the source's frame index) and
  ``X-Seq`` (the view's JPEG number: a client that sees it jump was too slow and skipped frames);
* ``/api/state``: JSON: faces (track id, box, emotion, confidence, scores), fps, frames, the
  publisher's ``delivery()`` and ``counters``, the model id.

Bounded: one encoder thread draws and encodes at most one JPEG per frame (and at most
``max_fps`` a second) into a single slot; every stream client sends the newest JPEG when it is
ready and never queues (a slow client skips frames; the socket's send buffer is kept small and a
client that takes no data for ``client_timeout`` seconds is dropped; a request's whole header must
come within ``header_timeout`` seconds, so clients trickling it cannot hold the connections). At
most ``max_clients`` stream clients (503 beyond) and ``max_clients + 8`` connections (a plain 503
from the accept loop beyond, so threads stay bounded too). With no stream client connected ``write`` only keeps
a reference to the newest frame and its faces: no image is drawn, copied or encoded.
Frames must not be modified after ``write`` (sources give a new array per frame).

The HTTP plumbing (address parsing, the bounded server, routes) is ``edge.view.server``, the
page ``edge.view.page``, who may see it ``edge.view.access``. Binds 127.0.0.1 unless told
otherwise; port 0 picks a free port (``url`` says which; logged). On a loopback address it is
open; on any other it refuses to start without a ``token`` (a token or password: browsers ask
for it, scripts send it as a Bearer token; failed attempts are rate-limited per address), and
with ``cert_file``/``key_file`` it serves HTTPS.
Python 3.6 compatible (device code): stdlib, numpy, OpenCV.
"""

import collections
import errno
import logging
import socket
import threading
import time
from typing import Any, Deque, Dict, Optional, Tuple

import cv2

from edge.view.access import HOW, Access, is_loopback, tls_context
from edge.view.annotate import FrameSink, draw
from edge.view.server import DEFAULT_HOST, LiveViewError, ViewServer, closed_by_peer, parse_view

log = logging.getLogger(__name__)

__all__ = ["LiveView", "LiveViewError", "parse_view", "BOUNDARY"]

BOUNDARY = "fer-edge-frame"
SEND_BUFFER = 128 * 1024  # bytes the kernel may hold for one stream client (a frame or two)
EXTRA_CONNECTIONS = 8  # page and /api/state requests beside the stream clients


class LiveView(FrameSink):
    """A frame sink serving the live page, the MJPEG stream and the state (see the module doc).

    Listening starts at construction (LiveViewError when the address is taken, or is not a
    loopback address and no ``token`` is given, or the certificate pair cannot be used), so a bad
    address stops the agent before it goes online; ``close()`` stops it and ends every stream.
    """

    def __init__(
        self,
        host=DEFAULT_HOST,
        port=0,
        publisher=None,
        model_id="",
        device_id="",
        max_clients=4,
        max_fps=15.0,
        quality=80,
        client_timeout=10.0,
        header_timeout=5.0,
        token=None,
        cert_file=None,
        key_file=None,
    ):
        self.publisher = publisher
        self.model_id = model_id
        self.device_id = device_id
        self.max_clients = int(max_clients)
        self.max_connections = self.max_clients + EXTRA_CONNECTIONS
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.quality = int(quality)
        self.client_timeout = float(client_timeout)
        self.header_timeout = float(header_timeout)  # a request's whole header (at most client_timeout)
        self.frames = 0  # frames written by the agent
        self.encoded = 0  # JPEGs drawn and encoded (0 while nobody watches)
        self.sent = 0  # JPEG parts sent, all clients together
        self.skipped = 0  # JPEGs stream clients did not get because they were too slow
        self.refused = 0  # stream clients turned away (503) beyond max_clients
        self.rejected = 0  # connections turned away beyond max_connections
        self.errors = 0
        self.stream_clients = 0
        self._lock = threading.Lock()
        self._frame_ready = threading.Condition(self._lock)  # the encoder waits on it
        self._jpeg_ready = threading.Condition(self._lock)  # stream clients wait on it
        self._latest: Optional[Tuple[int, Any, Any, Any, Any]] = None  # (frames, index, image, faces, timestamp)
        self._encoded_of = 0  # ``frames`` value of the frame in the JPEG slot
        self._jpeg: Optional[Tuple[int, Any, bytes]] = None  # (seq, frame index, bytes): the one JPEG slot
        self._times: Deque[float] = collections.deque(maxlen=60)
        self._sockets = set()
        self._stopping = threading.Event()
        self.access = Access(token or None)
        if bool(cert_file) != bool(key_file):
            raise LiveViewError(
                "live view: HTTPS needs both the certificate and its key (view_cert_file, view_key_file)"
            )
        self.tls = tls_context(cert_file, key_file) if cert_file else None
        try:
            self._server = ViewServer((host, int(port)), self)
        except OSError as exc:
            raise LiveViewError(
                "live view: cannot listen on {}:{} ({})".format(host, port, exc.strerror or exc)
            ) from exc
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        shown = "[{}]".format(self.host) if ":" in self.host else self.host
        if not is_loopback(self.host):
            if not self.access.required:
                self._server.server_close()
                raise LiveViewError(
                    "live view: {}:{} can be reached from the network and would show the camera to anyone "
                    "there: {}".format(shown, self.port, HOW)
                )
            if self.tls is None:
                log.warning(
                    "live view on %s:%d: plain HTTP: the token and the images cross the network unencrypted "
                    "(view_cert_file and view_key_file serve HTTPS)",
                    shown,
                    self.port,
                )
        self.url = "{}://{}:{}/".format("https" if self.tls is not None else "http", shown, self.port)
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="live-view-http", daemon=True
            ),
            threading.Thread(target=self._encode_loop, name="live-view-encoder", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "live view: %s (stream %sstream.mjpg, state %sapi/state)%s",
            self.url,
            self.url,
            self.url,
            ", credentials required" if self.access.required else "",
        )

    @classmethod
    def from_address(cls, text, **options):
        """A LiveView listening at ``HOST:PORT`` or ``PORT`` (see :func:`parse_view`)."""
        host, port = parse_view(text)
        return cls(host, port, **options)

    # -- the agent's side --

    def write(self, frame, faces):
        """Keep the newest frame and its event face entries; wakes the encoder only when someone watches."""
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self._times.append(now)
            self._latest = (self.frames, frame.index, frame.image, list(faces or ()), frame.timestamp)
            if self.stream_clients:
                self._frame_ready.notify()

    def close(self, timeout=2.0):
        """Stop serving: the listening socket closes, every stream ends. Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._lock:
            self._frame_ready.notify_all()
            self._jpeg_ready.notify_all()
            sockets = list(self._sockets)
        for sock in sockets:  # a send blocked on a slow client returns at once
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.shutdown()
        self._server.server_close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        while self.stream_clients and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info(
            "live view stopped: %d JPEG(s) encoded, %d sent, %d skipped by slow clients, %d refused, %d unauthorized",
            self.encoded,
            self.sent,
            self.skipped,
            self.refused + self.rejected,
            self.access.unauthorized,
        )

    # -- state --

    def fps(self, now=None):
        """Frames per second over the last (up to 60) frames; 0 when none came for 2 s."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = list(self._times)
        if len(times) < 2 or now - times[-1] > 2.0 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def state(self):
        """The ``/api/state`` object."""
        with self._lock:
            latest = self._latest
        faces: Any = []
        index, stamp = None, None
        size: Tuple[Optional[int], Optional[int]] = (None, None)
        if latest is not None:
            _, index, image, faces, stamp = latest
            size = (int(image.shape[1]), int(image.shape[0]))
        out = {
            "device_id": self.device_id,
            "model": self.model_id,
            "frames": self.frames,
            "fps": round(self.fps(), 2),
            "frame": index,
            "timestamp": stamp,
            "width": size[0],
            "height": size[1],
            "faces": faces,
            "view": {
                "url": self.url,
                "stream_clients": self.stream_clients,
                "max_clients": self.max_clients,
                "encoded": self.encoded,
                "sent": self.sent,
                "skipped": self.skipped,
                "refused": self.refused + self.rejected,
                "unauthorized": self.access.unauthorized,
                "errors": self.errors,
            },
        }
        out.update(self._publisher_state())
        return out

    def _publisher_state(self):
        out: Dict[str, Any] = {}
        publisher = self.publisher
        if publisher is None:
            return out
        try:
            delivery = publisher.delivery()
            if delivery is not None:
                out["delivery"] = delivery
            out["counters"] = publisher.counters
            if "connected" not in out.get("delivery", {}):
                out["connected"] = bool(publisher.connected)
        except Exception as exc:  # the page must not fail because a counter did
            log.debug("live view: publisher state: %s", exc)
        return out

    # -- the encoder thread --

    def _encode_loop(self):
        last = 0.0
        while not self._stopping.is_set():
            with self._lock:
                while not self._stopping.is_set() and not (
                    self.stream_clients and self._latest is not None and self._latest[0] != self._encoded_of
                ):
                    self._frame_ready.wait(0.5)
                if self._stopping.is_set():
                    return
            wait = last + self.min_interval - time.monotonic()
            if wait > 0:  # at most max_fps; a newer frame replaces this one meanwhile
                self._stopping.wait(wait)
                continue
            with self._lock:
                latest = self._latest
                if latest is None:  # not reached: the wait above ends with a frame or at stop
                    continue
                number, index, image, faces, _ = latest
                self._encoded_of = number
            try:
                ok, jpeg = cv2.imencode(".jpg", draw(image, faces), [int(cv2.IMWRITE_JPEG_QUALITY), self.quality])
                if not ok:
                    raise ValueError("JPEG encoding failed")
            except Exception as exc:  # a bad frame must not end the stream
                self.errors += 1
                log.warning("live view: frame %s not shown (%s: %s)", index, type(exc).__name__, exc)
                continue
            last = time.monotonic()
            with self._lock:
                self.encoded += 1
                self._jpeg = (self.encoded, index, jpeg.tobytes())
                self._jpeg_ready.notify_all()

    # -- a stream client (its own connection thread) --

    def stream_to(self, handler):
        """Send the newest JPEG to ``handler``'s client each time there is a new one, until it or the view stops."""
        with self._lock:
            full = self.stream_clients >= self.max_clients
            if full:
                self.refused += 1
            else:
                self.stream_clients += 1
                self._sockets.add(handler.connection)
                self._frame_ready.notify()
        if full:
            handler.send_body(
                503,
                "text/plain",
                "fer-edge live view: at most {} stream clients\n".format(self.max_clients).encode("utf-8"),
                extra=(("Retry-After", "5"),),
            )
            return
        try:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            handler.send_response(200)
            handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY)
            handler.send_header("Cache-Control", "no-store")
            handler.end_headers()
            self._send_parts(handler)
        except OSError as exc:  # the client went away, or took no data for client_timeout seconds
            if getattr(exc, "errno", None) not in (errno.EPIPE, errno.ECONNRESET, None):
                log.debug("live view: stream client %s: %s", handler.client_address[0], exc)
        finally:
            with self._lock:
                self.stream_clients -= 1
                self._sockets.discard(handler.connection)

    def _send_parts(self, handler):
        seen = 0
        while not self._stopping.is_set():
            with self._lock:
                if self._jpeg is None or self._jpeg[0] == seen:
                    self._jpeg_ready.wait(0.5)
                item = self._jpeg if self._jpeg is not None and self._jpeg[0] != seen else None
            if self._stopping.is_set():
                return
            if item is None:  # no new frame: a client that has gone must not keep the encoder busy
                if closed_by_peer(handler.connection):
                    return
                continue
            seq, index, data = item
            head = "--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame: {}\r\nX-Seq: {}\r\n\r\n".format(
                BOUNDARY, len(data), index, seq
            )
            with self._lock:  # counted before the write: a client that leaves during it skipped them all the same
                self.skipped += seq - seen - 1 if seen else 0
            seen = seq
            handler.wfile.write(head.encode("ascii") + data + b"\r\n")
            with self._lock:
                self.sent += 1
