"""The in-browser app: the demo page of `fer-edge serve` and `fer-edge web` (docs/web.md).

``static/``: the page and the JavaScript pipeline (plain ES modules); ``static/vendor/``: onnxruntime-web,
copied there by `make web-vendor` from the npm registry (not under version control); ``site``: the files a
host serves, with ``config.json`` written from the Python definitions; ``static_server``, ``browser``,
``check``: the parity check in headless Chromium; ``command``: `fer-edge web`.
"""
