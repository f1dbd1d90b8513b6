"""A real mosquitto broker for tests (importable as ``mqtt_broker``).

    from mqtt_broker import running_mosquitto, mosquitto_fixture

    broker = mosquitto_fixture(scope="module")     # a pytest fixture in the test module

    with running_mosquitto(tmp_path) as broker:    # or a context manager
        broker.url   # mqtt://127.0.0.1:<port>
        broker.stop(); broker.start()              # restart on the same port (outage tests)

    with DelayProxy(broker.port, delay=0.04) as proxy:   # a slow link in front of it
        proxy.url                                  # mqtt://127.0.0.1:<proxy port>

The broker listens on 127.0.0.1 only, on a free port, anonymous, without persistence (unless
``persistence=True``: then its in-memory state, e.g. persistent sessions, survives
``stop()``/``start()``). ``config="..."`` replaces the generated configuration by a complete one
(``{port}`` and ``{dir}`` in it are replaced; logging lines are added): tests of the example
configurations in examples/mosquitto/. Tests skip with the reason when the ``mosquitto`` binary is missing
(``apt-get install mosquitto``).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fer_edge.broker import free_port  # the tests import it from here too

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
HOST = "127.0.0.1"


def find_mosquitto():
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def require_mosquitto():
    """Path of mosquitto; skips the calling test with the reason when it is missing."""
    path = find_mosquitto()
    if path is None:
        pytest.skip("mosquitto broker not installed (apt-get install mosquitto; `make test` installs it)")
    return path


def port_accepts(port, host=HOST, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Mosquitto(object):
    """One mosquitto process on ``host:port`` with its own config in ``directory``."""

    def __init__(self, directory, port=None, extra_conf="", persistence=False, binary=None, config=None):
        self.binary = binary or require_mosquitto()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.conf_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self.process = None
        self._log_file = None
        if config is not None:  # a complete configuration (e.g. from examples/mosquitto/)
            lines = [
                config.replace("{port}", str(self.port)).replace("{dir}", str(self.directory)),
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
            ]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                lines.append("user root")
            self.conf_path.write_text("\n".join(lines) + "\n")
            return
        lines = [
            "listener {} {}".format(self.port, HOST),
            "allow_anonymous true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if persistence:
            lines += [
                "persistence true",
                "persistence_location {}/".format(self.directory),
                "persistence_file mosquitto.db",
                "autosave_interval 0",
            ]
        else:
            lines.append("persistence false")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot read tmp dirs
        if extra_conf:
            lines.append(extra_conf)
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def url(self):
        return "mqtt://{}:{}".format(self.host, self.port)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout=10.0):
        """Start the broker (no-op if running) and wait until the port accepts connections."""
        if self.running:
            return self
        self._log_file = open(str(self.log_path), "ab")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise RuntimeError(
                    "mosquitto exited with {} on port {}:\n{}".format(
                        self.process.returncode, self.port, self.log_text()
                    )
                )
            if port_accepts(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            "mosquitto did not accept connections on port {} within {} s:\n{}".format(
                self.port, timeout, self.log_text()
            )
        )

    def stop(self, timeout=5.0):
        """Stop the broker (SIGTERM, then SIGKILL); the port can be reused by ``start()``."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._close_log()
        return self

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


@contextlib.contextmanager
def running_mosquitto(tmp_dir, port=None, extra_conf="", persistence=False, config=None):
    """A started :class:`Mosquitto` in ``tmp_dir``; stopped at the end."""
    broker = Mosquitto(tmp_dir, port=port, extra_conf=extra_conf, persistence=persistence, config=config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def mosquitto_fixture(scope="module", extra_conf="", persistence=False):
    """A pytest fixture (assign it to a name in a test module) yielding a running broker."""

    @pytest.fixture(scope=scope)
    def _broker(tmp_path_factory):
        with running_mosquitto(
            tmp_path_factory.mktemp("mosquitto"), extra_conf=extra_conf, persistence=persistence
        ) as broker:
            yield broker

    return _broker


class DelayProxy(object):
    """A TCP proxy on 127.0.0.1 that delivers every byte ``delay`` seconds late, both ways: a slow
    link (a 40 ms mobile or satellite hop) in front of a broker on ``port``. Order is kept; when one
    side closes, the other is closed once the delayed bytes went out. While the broker is down, the
    proxy accepts a connection and closes it at once. ``url``:
    ``mqtt://127.0.0.1:<proxy port>``; ``close()`` (or ``with``) stops it and closes every link."""

    def __init__(self, port, delay=0.04, host=HOST):
        self.target = (host, port)
        self.delay = float(delay)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._sockets = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "mqtt://{}:{}".format(HOST, self.port)

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        pending = []  # (due, bytes); None for the end of the stream
        cond = threading.Condition()

        def deliver():
            while True:
                with cond:
                    while not pending:
                        cond.wait()
                    due, data = pending[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                with cond:
                    pending.pop(0)
                try:
                    if data is None:
                        sink.shutdown(socket.SHUT_RDWR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        threading.Thread(target=deliver, daemon=True).start()
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            with cond:
                pending.append((time.monotonic() + self.delay, data or None))
                cond.notify()
            if not data:
                return

    def close(self):
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- shared by the MQTT test modules

PROBS = [0.05, 0.7, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01]


def sample_event(device, frame, faces=1):
    """A schema-valid emotion event with ``faces`` faces (track ids 0..faces-1)."""
    from edge.events.payloads import face_entry, make_event
    from edge.labels import EMOTIONS

    return make_event(
        device,
        frame,
        [face_entry(t, (10 * t, 20, 48, 48), EMOTIONS, PROBS) for t in range(faces)],
        "ferplus-test",
        "1",
        source="test",
    )
