"""An MQTT broker started in-process (amqtt) for `make demo` and `fer-edge run` without --broker.

Host only: amqtt needs a current Python. Devices publish to a real broker (mosquitto, AWS IoT).
"""

import asyncio
import random
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqtt.broker import Broker


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
# Below Linux's ephemeral ports (32768-60999 unless configured) and above Ray's default worker
# ports (10002-19999): nothing the OS hands out for port 0 lands here.
QUIET_PORTS = (20000, 32768)


def quiet_range(range_file: str = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """Ports [low, high) that the OS does not hand out as ephemeral ports, from ``QUIET_PORTS``.

    A port picked by binding port 0 comes from the ephemeral range, where any process started
    afterwards (Ray's GCS, raylet and agents, a client's outgoing connection) may take it before
    the service told to listen there binds it: Ray Serve's proxy then fails with "Failed to bind".
    """
    low, high = QUIET_PORTS
    try:
        with open(range_file) as f:
            first, last = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        return low, high
    if first < high and last >= low:  # the ephemeral range overlaps: keep the part below it
        high = max(low, first)
    return low, high


def free_port(host: str = "127.0.0.1", ports: tuple[int, int] | None = None, tries: int = 200) -> int:
    """A TCP port on ``host`` free now, drawn from ``ports`` [low, high) (default: quiet_range()).

    Falls back to the OS's pick (port 0) when that range is empty or ``tries`` draws find it full.
    """
    low, high = ports or quiet_range()
    rng = random.SystemRandom()
    for _ in range(tries if high > low else 0):
        port = rng.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (two free_port() calls may return the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


class EmbeddedBroker(object):
    """amqtt broker on 127.0.0.1:<port> in a daemon thread; ``url`` is its mqtt:// address."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.url = "mqtt://{}:{}".format(self.host, self.port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: "Broker | None" = None
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    @staticmethod
    def available() -> bool:
        """True when amqtt is installed (the ``demo`` extra; a plain ``pip install fer-edge`` lacks it)."""
        import importlib.util

        return importlib.util.find_spec("amqtt") is not None

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise RuntimeError(
                "the embedded broker needs amqtt (pip install amqtt), or give --broker mqtt://HOST:PORT"
            ) from None
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            config = {
                "listeners": {"default": {"type": "tcp", "bind": "{}:{}".format(self.host, self.port)}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            try:
                self._broker = Broker(config, loop=self._loop)
                self._loop.run_until_complete(self._broker.start())
            except Exception as exc:  # reported to the caller of start()
                self._error = exc
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            raise RuntimeError(
                "embedded MQTT broker did not start on {}:{} ({})".format(
                    self.host, self.port, self._error or "timeout"
                )
            )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is None or self._broker is None or self._thread is None:  # not started
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout)
        except Exception:  # shutting down: nothing more to do with a failing broker
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
