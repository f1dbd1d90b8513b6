"""The demo page of `fer-edge serve`: ``GET /`` (the page) and ``GET /static/PATH`` (its scripts, the
vendored onnxruntime-web, the two ONNX models and ``config.json``), from the package (``fer_edge.web``).

Without the vendored runtime (`make web-vendor` not run) the page still works "on the server"; its
"in this browser" mode is then off, and config.json says why."""

import json
import logging
import mimetypes
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fer_edge.web.site import NotInBrowser, app_config, page_html, site_files
from fer_edge.web.static_server import TYPES
from fer_edge.web.vendor import VendorMissing

log = logging.getLogger(__name__)
API = "/v1/emotions"
STATIC = "/static/"


def page_routes(pipeline: Any, api_key_required: bool) -> list[Route]:
    """The routes of the page for a loaded ``edge.pipeline.FaceEmotionPipeline``."""
    try:
        config = app_config(pipeline, api=API, api_key_required=api_key_required)
        files = site_files(pipeline)
        config["browser"] = True
    except (NotInBrowser, VendorMissing) as exc:
        log.warning("the demo page's in-browser mode is off: %s", exc)
        config = {"api": API, "api_key_required": api_key_required, "browser": False, "browser_off": str(exc)}
        files = site_files(pipeline, vendor=False, models=False)
    config_body = json.dumps(config).encode()
    page = page_html(STATIC)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def static(request: Request) -> Response:
        path = request.path_params["path"]
        if path == "config.json":
            return Response(config_body, media_type="application/json")
        source = files.get(path)
        if source is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no such file"}}, status_code=404)
        suffix = os.path.splitext(path)[1]
        media = TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(source, media_type=media)

    return [Route("/", index, methods=["GET"]), Route(STATIC + "{path:path}", static, methods=["GET"])]
