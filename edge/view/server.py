"""The live view's HTTP side: its address (``HOST:PORT``), a bounded threaded server and the routes.

``/`` the page (``edge.view.page``), ``/api/state`` the view's state as JSON, ``/stream.mjpg``
handed to the view (``edge.view.live.LiveView.stream_to``). At most ``view.max_connections``
connections are served, each by a thread; beyond, the accept loop answers 503 itself (no thread).
A request's whole header (and, with ``view.tls``, the TLS handshake before it) must arrive within
``view.header_timeout`` seconds of the connection (a client trickling it a byte at a time is
dropped then: the limit is per request, not per read); after it, each read and send times out
after ``view.client_timeout`` seconds. Every request passes ``view.access`` first
(``edge.view.access``: a credential beyond loopback).
Python 3.6 compatible (device code): stdlib only.
"""

import io
import json
import logging
import select
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import List, Tuple

from edge.view.page import PAGE

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
    b"Connection: close\r\n\r\nfer-edge live view: too many connections\n"
)


class LiveViewError(OSError):
    """The live view cannot listen where it was told to."""


def parse_view(text, where="key 'view'"):
    """``HOST:PORT``, ``PORT`` or ``[IPv6]:PORT`` -> (host, port); '' -> None. ValueError naming ``where``."""
    text = str(text or "").strip()
    if not text:
        return None
    if text.isdigit():
        host, port = DEFAULT_HOST, text
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            "{}: {!r} is not HOST:PORT or PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080, 8080; port 0 "
            "picks a free one)".format(where, text)
        )
    return host, int(port)


def closed_by_peer(sock):
    """True when the client has closed its end (readable with nothing to read) or the socket failed.
    The TCP stream itself is peeked (``socket.socket.recv``), also under TLS, where the SSL socket's
    own ``recv`` takes no flags."""
    try:
        readable = select.select([sock], [], [], 0)[0]
        return bool(readable) and socket.socket.recv(sock, 1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def tls_handshake(context, sock, deadline):
    """``sock`` wrapped server-side in ``context`` (an ssl.SSLContext), its handshake done by
    ``deadline`` (``time.monotonic()``) however slowly the client sends; socket.timeout otherwise."""
    wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    try:
        wrapped.setblocking(False)
        while True:
            try:
                wrapped.do_handshake()
                break
            except ssl.SSLWantReadError:
                wait: Tuple[List[ssl.SSLSocket], List[ssl.SSLSocket]] = ([wrapped], [])
            except ssl.SSLWantWriteError:
                wait = ([], [wrapped])
            left = deadline - time.monotonic()
            if left <= 0 or not any(select.select(wait[0], wait[1], [], left)[:2]):
                raise socket.timeout("the TLS handshake did not finish in time")
        wrapped.setblocking(True)
    except BaseException:
        wrapped.close()
        raise
    return wrapped


class ViewServer(socketserver.ThreadingMixIn, HTTPServer):
    """An HTTP server with a thread per connection, at most ``view.max_connections`` at a time."""

    daemon_threads = True
    block_on_close = False  # Python 3.7/3.8 keep a list of non-daemon threads otherwise
    allow_reuse_address = True

    def __init__(self, address, view):
        self.view = view
        self.active = 0
        self.count_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        HTTPServer.__init__(self, address, _Handler)

    def process_request(self, request, client_address):
        with self.count_lock:
            busy = self.active >= self.view.max_connections
            if not busy:
                self.active += 1
        if busy:  # answered here, without a thread: connections beyond the bound cost no thread
            self.view.rejected += 1
            if self.view.tls is None:  # under TLS the answer would need a handshake: closed only
                try:
                    request.settimeout(1.0)
                    request.sendall(BUSY)
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        socketserver.ThreadingMixIn.process_request(self, request, client_address)

    def handle_error(self, request, client_address):
        """A connection that failed: a client that went away, timed out or failed the TLS handshake
        is a debug line; anything else is logged with its traceback (never printed to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("live view: %s: %s: %s", client_address[0], type(exc).__name__, exc)
        else:
            log.error("live view: %s: %s: %s", client_address[0], type(exc).__name__, exc, exc_info=True)

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            with self.count_lock:
                self.active -= 1


class HeaderDeadline(io.RawIOBase):
    """A connection's input while its request header is read: every read waits at most until
    ``deadline`` (``time.monotonic()``), so the whole header has to arrive by then, however it is
    trickled. ``done()``: the header is in; reads and sends time out after ``after`` s again."""

    def __init__(self, sock, deadline, after):
        io.RawIOBase.__init__(self)
        self.sock, self.deadline, self.after = sock, deadline, after

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the request header did not arrive in time")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)

    def done(self):
        if self.deadline is not None:
            self.deadline = None
            self.sock.settimeout(self.after)


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "fer-edge-live-view"
    protocol_version = "HTTP/1.0"

    def setup(self):
        view = self.server.view
        deadline = time.monotonic() + min(view.header_timeout, view.client_timeout)
        self.tls_socket = None
        if view.tls is not None:  # in this connection's thread: a slow handshake holds no other
            self.request = self.tls_socket = tls_handshake(view.tls, self.request, deadline)
        self.timeout = view.client_timeout  # type: ignore[misc]  # per connection: idle clients go
        BaseHTTPRequestHandler.setup(self)
        self.rfile.close()  # the socket's own reader, replaced by one with the header's deadline
        self.header_input = HeaderDeadline(self.connection, deadline, view.client_timeout)
        self.rfile = io.BufferedReader(self.header_input)

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        finally:
            if self.tls_socket is not None:  # the server closes the plain socket it accepted, not this one
                self.tls_socket.close()

    def parse_request(self):
        try:
            return BaseHTTPRequestHandler.parse_request(self)  # reads the header lines
        finally:
            self.header_input.done()

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.client_address[0], fmt % args)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        view = self.server.view
        refusal = view.access.refusal(self.headers.get("Authorization"), self.client_address[0])
        if refusal is not None:  # a credential is needed (edge.view.access) and was not given
            code, body, extra = refusal
            self.send_body(code, "text/plain", body, extra=extra)
            return
        if path in ("/", "/index.html"):
            self.send_body(200, "text/html; charset=utf-8", PAGE.encode("utf-8"))
        elif path == "/api/state":
            self.send_body(200, "application/json", json.dumps(view.state()).encode("utf-8"))
        elif path == "/stream.mjpg":
            view.stream_to(self)
        else:
            self.send_body(404, "text/plain", b"not found: / (page), /stream.mjpg, /api/state\n")

    def send_body(self, code, kind, body, extra=()):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
