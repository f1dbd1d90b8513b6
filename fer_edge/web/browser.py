"""Headless Chromium driven over the DevTools protocol (a websocket; the ``websockets`` package): open a
page, evaluate JavaScript, choose files in an input, and record every URL the page asks for."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-allow-origins=*",
)


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a page failed (the message says which)."""


def chromium_path() -> str | None:
    """The Chromium this machine has (``$FER_EDGE_CHROMIUM`` or /usr/bin/chromium), or None."""
    path = os.environ.get("FER_EDGE_CHROMIUM") or CHROMIUM
    return path if os.path.isfile(path) else shutil.which("chromium")


def why_unavailable() -> str | None:
    """None when headless Chromium can be driven here, else why not (no Chromium, no ``websockets``)."""
    import importlib.util

    if chromium_path() is None:
        return "no Chromium (/usr/bin/chromium; Debian's package `chromium`)"
    if importlib.util.find_spec("websockets") is None:
        return "no websockets package (pip install 'fer-edge[web]')"
    return None


class Chromium:
    """One headless Chromium with a fresh profile; ``extra``: more flags (a fake camera)."""

    def __init__(self, extra: tuple[str, ...] = (), timeout: float = 60.0):
        path = chromium_path()
        if path is None:
            raise BrowserError("no Chromium here (/usr/bin/chromium; Debian's package `chromium`)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="fer-edge-chromium-")
        command = [path, *FLAGS, *extra, "--user-data-dir=" + self.profile, "--remote-debugging-port=0", "about:blank"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws: Any = None
        self._id = 0
        self.urls: list[str] = []
        self.console: list[str] = []
        try:
            self._connect()
        except Exception:
            self.close()
            raise

    def _connect(self) -> None:
        from websockets.sync.client import connect

        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while not os.path.isfile(port_file) or not open(port_file).read().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BrowserError("Chromium did not start (exit status {})".format(self.proc.poll()))
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen("http://127.0.0.1:{}/json/list".format(port), timeout=10) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        if not pages:
            raise BrowserError("Chromium opened no page")
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout)
        self.call("Network.enable")
        self.call("Runtime.enable")
        self.call("Page.enable")

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.urls.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])

    def call(self, method: str, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (BrowserError on a protocol error)."""
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("{}: no answer in {:g} s".format(method, timeout or self.timeout))
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError("{}: {}".format(method, message["error"]))
                return dict(message.get("result", {}))
            self._event(message)

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression (awaited when a promise); BrowserError on an exception."""
        result = self.call(
            "Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError("page error: {}".format(text))
        return result.get("result", {}).get("value")

    def open(self, url: str, ready: str = "window.fer && window.fer.ready") -> None:
        """Navigate and wait until ``ready`` is true in the page."""
        self.call("Page.navigate", url=url)
        self.wait_for(ready)

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(
                "(() => {{ try {{ return {}; }} catch (e) {{ return null; }} }})()".format(expression)
            )
            if value:
                return value
            time.sleep(0.1)
        raise BrowserError("timed out waiting for {} (console: {})".format(expression, self.console[-5:]))

    def set_files(self, selector: str, paths: list[str]) -> None:
        """Choose ``paths`` in the file input ``selector`` (as a user would)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.call("DOM.setFileInputFiles", nodeId=node, files=[os.path.abspath(p) for p in paths])

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # already gone
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
