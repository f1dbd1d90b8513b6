"""An MQTT broker started in-process (amqtt) for `make demo` and `fer-edge run` without --broker.

Host only: amqtt needs a current Python. Devices publish to a real broker (mosquitto, AWS IoT).
"""

import asyncio
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqtt.broker import Broker


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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
