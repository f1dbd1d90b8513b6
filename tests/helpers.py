"""Helpers shared by the test modules (importable as ``helpers``); fixtures are in conftest.py.

    wait_until(predicate, timeout=10.0)            # poll until true: True, or False at the timeout
    sub, got = collect(url, "cam-1", kinds=...)    # an edge.delivery.subscribe subscriber into a Collector
    got.wait(lambda ms: len(ms) >= 3)              # block on the collected messages (asserts)
    inbox = RawInbox(url, "me", ["a/#"])           # a bare paho client for any topic filters
    core = CoreIpc()                               # the Greengrass core's IPC server, recording
    certs = make_pki(folder)                       # test certificates made with openssl (conftest: pki)
    proc = subscribe_cli("--broker", url, ...)     # `fer-edge subscribe ...` run to its end (CompletedProcess)

The waiting and MQTT helpers are written for Python 3.6 too (paho-mqtt 1.x or 2.x); CoreIpc needs 3.7+.
"""

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time


def wait_until(predicate, timeout=10.0, step=0.02):
    """Call ``predicate()`` every ``step`` s until it is true (True) or ``timeout`` s have passed
    (False); the last call is made after the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


class Collector(object):
    """Collects what it is called with (edge.delivery.subscribe's ``Message`` as ``on_message``), in
    arrival order; ``wait(predicate)`` until the messages satisfy it."""

    def __init__(self, timeout=10.0):
        self.messages = []
        self.timeout = timeout
        self._cond = threading.Condition()

    def __call__(self, message):
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait(self, predicate, timeout=None):
        """Block until ``predicate(messages)`` is true (returns a copy of them); AssertionError with
        the last messages after ``timeout`` s (default: the collector's)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        "timed out with {} messages: {}".format(
                            len(self.messages), [(m.topic, m.data) for m in self.messages[-5:]]
                        )
                    )
                self._cond.wait(min(remaining, 0.5))
            return list(self.messages)

    def of_kind(self, kind, device_id=None):
        """The messages of one kind (events, status, ...), of one device when ``device_id`` is given."""
        with self._cond:
            return [m for m in self.messages if m.kind == kind and device_id in (None, m.device_id)]

    def events(self):
        """The payloads of the events."""
        return [m.data for m in self.of_kind("events")]

    def topics(self):
        """The topic of every message, in arrival order."""
        with self._cond:
            return [m.topic for m in self.messages]


def collect(url, device_id="+", timeout=10.0, **options):
    """A subscriber (edge.delivery.subscribe; ``options`` passed on) whose messages go to a new
    :class:`Collector`: ``(subscriber, collector)`` once the broker acknowledged the subscription,
    within ``timeout`` s (else AssertionError). Stop the subscriber when done."""
    from edge.delivery.subscribe import subscribe

    collector = Collector(timeout)
    sub = subscribe(url, device_id=device_id, on_message=collector, **options)
    if not sub.wait_subscribed(timeout):
        sub.stop()
        raise AssertionError(
            "subscription to {} for {} not acknowledged within {} s: {}".format(url, device_id, timeout, sub.last_error)
        )
    return sub, collector


class RawInbox(object):
    """A bare paho client (edge.delivery.client.create_client; ``client_options`` passed on: TLS files,
    credentials) for any topic filters, QoS 1. Every message is kept as ``(topic, payload text,
    retained)`` in arrival order. Connected and subscribed to ``filters`` when built (asserted)."""

    def __init__(self, url, client_id, filters=(), timeout=10.0, **client_options):
        from edge.delivery.client import create_client
        from edge.delivery.url import parse_url

        self.messages = []
        self.timeout = timeout
        self._cond = threading.Condition()
        self._connack = None
        self._granted = {}  # subscribe mid -> all granted
        self.client = create_client(url, client_id, **client_options)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        parsed = parse_url(url)
        self.client.connect(parsed.host, parsed.port)
        self.client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connack is not None, timeout)
            connack = self._connack
        if connack != 0:
            self.stop()
            raise AssertionError("{} did not connect to {} (CONNACK {})".format(client_id, url, connack))
        if filters:
            self.subscribe(*filters)

    # paho callbacks, 1.x and 2.x (VERSION2) signatures

    def _on_connect(self, client, userdata, flags, rc, *args):
        from edge.delivery.client import rc_value

        with self._cond:
            self._connack = rc_value(rc)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted, *args):
        from edge.delivery.client import subscribe_granted_ok

        with self._cond:
            self._granted[mid] = subscribe_granted_ok(granted)
            self._cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self._cond:
            self.messages.append((message.topic, message.payload.decode("utf-8"), bool(message.retain)))

    def subscribe(self, *filters):
        """Subscribe to topic filters; returns once the broker granted them (AssertionError if not)."""
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        with self._cond:
            done = self._cond.wait_for(lambda: mid in self._granted, self.timeout)
            assert done and self._granted[mid], "subscription to {} refused".format(list(filters))

    def of(self, topic):
        """``[(payload text, retained)]`` of one topic."""
        with self._cond:
            return [(text, retain) for t, text, retain in self.messages if t == topic]

    def data(self, topic):
        """The JSON payloads of one topic (None for an empty one: a retained message cleared)."""
        return [json.loads(text) if text else None for text, _ in self.of(topic)]

    def topics(self, prefix=""):
        """The set of topics under ``prefix`` that got a non-empty payload."""
        with self._cond:
            return {t for t, text, _ in self.messages if t.startswith(prefix) and text}

    def wait(self, predicate, timeout=60.0, what="a condition"):
        """Poll ``predicate()`` (see :func:`wait_until`); AssertionError naming ``what`` and the last
        messages after ``timeout`` s."""
        if not wait_until(predicate, timeout, step=0.05):
            with self._cond:
                last = self.messages[-8:]
            raise AssertionError("timed out waiting for {}; got {}".format(what, last))

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def subscribe_cli(*args, timeout=60):
    """``fer-edge subscribe`` with ``args`` (str() of each) from the repository root, run to its end:
    the ``subprocess.CompletedProcess`` with text stdout and stderr."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, "-m", "fer_edge", "subscribe"] + [str(a) for a in args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------- the DeepLens Lambda's Greengrass core

DOUBLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "doubles")  # see its README
DEEPLENS_THING = "deeplens_fer_test"  # AWS_IOT_THING_NAME in the core's environment (conftest.greengrass_core)


class CoreIpc(object):
    """Stands in for the Greengrass core's IPC server: records what the IPC client posts."""

    def __init__(self):
        self.posts = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                context = json.loads(base64.b64decode(self.headers["X-Amz-Client-Context"]).decode("utf-8"))
                owner.posts.append(
                    {
                        "path": self.path,
                        "context": context,
                        "body": body,
                        "type": self.headers["X-Amz-Invocation-Type"],
                        "auth": self.headers["Authorization"],
                    }
                )
                self.send_response(202)
                self.send_header("X-Amz-InvocationId", str(len(owner.posts)))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def messages(self):
        return [(p["context"]["custom"]["subject"], json.loads(p["body"].decode("utf-8"))) for p in self.posts]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- test certificates (the openssl command)


def openssl(folder, *args):
    subprocess.check_call(("openssl",) + args, cwd=str(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(folder, name, subject=None):
    """A self-signed EC P-256 CA ``<name>.crt`` / ``<name>.key`` (2 days)."""
    openssl(
        folder,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        name + ".key",
        "-out",
        name + ".crt",
        "-days",
        "2",
        "-subj",
        subject or "/CN=fer-edge test " + name,
    )


def key_and_csr(folder, name, subject):
    """An EC P-256 key ``<name>.key`` and a certificate request ``<name>.csr`` for ``subject``."""
    openssl(
        folder,
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        name + ".key",
        "-out",
        name + ".csr",
        "-subj",
        subject,
    )


def sign(folder, name, ca, ext=None):
    """``<name>.crt``: ``<name>.csr`` signed by the CA ``<ca>.crt``/``<ca>.key`` (``ext``: extensions text)."""
    args = [
        "x509",
        "-req",
        "-in",
        name + ".csr",
        "-CA",
        ca + ".crt",
        "-CAkey",
        ca + ".key",
        "-CAcreateserial",
        "-out",
        name + ".crt",
        "-days",
        "2",
    ]
    if ext:
        with open(os.path.join(str(folder), name + ".ext"), "w") as handle:
            handle.write(ext)
        args += ["-extfile", name + ".ext"]
    openssl(folder, *args)


def make_pki(folder):
    """Test certificates in ``folder`` (a pathlib.Path): the CAs ``ca`` and ``other-ca``, a server
    certificate ``server`` for DNS:localhost, client certificates (CN = the name) ``cam-a``,
    ``consumer``, ``dashboard``, ``homeassistant`` signed by ``ca`` and ``rogue`` (CN cam-a) signed
    by ``other-ca``. Returns {name: path of <name>.crt}; each key is beside it as <name>.key."""
    for ca in ("ca", "other-ca"):
        make_ca(folder, ca)
    key_and_csr(folder, "server", "/CN=localhost")
    sign(folder, "server", "ca", "subjectAltName=DNS:localhost\n")
    for client in ("cam-a", "consumer", "dashboard", "homeassistant"):
        key_and_csr(folder, client, "/CN=" + client)
        sign(folder, client, "ca")
    key_and_csr(folder, "rogue", "/CN=cam-a")  # right name, wrong CA
    sign(folder, "rogue", "other-ca")
    return dict((p.stem, str(p)) for p in folder.iterdir() if p.suffix == ".crt")
