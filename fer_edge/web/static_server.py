"""A local static server for the app (and the images a check runs on): loopback only, a thread of its
own, and a record of every path asked for (the offline check reads it)."""

import http.server
import mimetypes
import threading
from typing import Callable

TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
}


class StaticServer:
    """``files``: URL path (no leading /) -> a file path, or a callable giving the bytes."""

    def __init__(self, files: dict[str, str | Callable[[], bytes]]):
        self.files = dict(files)
        self.requested: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                path = self.path.split("?", 1)[0].lstrip("/") or "index.html"
                server.requested.append(path)
                source = server.files.get(path)
                if source is None:
                    self.send_error(404)
                    return
                if callable(source):
                    body = source()
                else:
                    with open(source, "rb") as f:
                        body = f.read()
                suffix = "." + path.rsplit(".", 1)[-1] if "." in path else ""
                self.send_response(200)
                self.send_header(
                    "Content-Type", TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:{}/".format(self.httpd.server_address[1])

    def __enter__(self) -> "StaticServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
