"""The API's OpenAPI 3.1 description (served at /openapi.json)."""

from typing import Any

_ERROR = {
    "description": "an error: what was wrong",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["code", "message"],
                    }
                },
            }
        }
    },
}
_FACE = {
    "type": "object",
    "properties": {
        "box": {
            "type": "array",
            "items": {"type": "integer"},
            "minItems": 4,
            "maxItems": 4,
            "description": "x, y, w, h",
        },
        "emotion": {"type": "string"},
        "confidence": {"type": "number"},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "required": ["box", "emotion", "confidence", "scores"],
}


def openapi(version: str, auth: bool) -> dict[str, Any]:
    """The description; ``auth``: the service requires an API key."""
    emotions: dict[str, Any] = {
        "summary": "Faces and emotions of one image",
        "description": "The same faces and values as `fer-edge image`. The image is the body (Content-Type "
        "image/jpeg, image/png or image/webp) or the field `image` of multipart/form-data. Never stored or logged.",
        "requestBody": {
            "required": True,
            "content": {
                "image/*": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"image": {"type": "string", "format": "binary"}},
                        "required": ["image"],
                    }
                },
            },
        },
        "responses": {
            "200": {
                "description": "the faces found (none: an empty list)",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"faces": {"type": "array", "items": _FACE}, "model": {"type": "object"}},
                        }
                    }
                },
            },
            "400": _ERROR,
            "401": _ERROR,
            "408": _ERROR,
            "413": _ERROR,
            "415": _ERROR,
            "429": _ERROR,
            "503": _ERROR,
        },
    }
    if auth:
        emotions["security"] = [{"bearer": []}, {"apiKey": []}]
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "fer-edge serve", "version": version},
        "paths": {
            "/v1/emotions": {"post": emotions},
            "/healthz": {"get": {"summary": "The process answers", "responses": {"200": dict(text, description="ok")}}},
            "/readyz": {
                "get": {
                    "summary": "The models are loaded",
                    "responses": {"200": dict(text, description="ready"), "503": dict(text, description="not ready")},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus text", "responses": {"200": dict(text, description="the metrics")}}
            },
            "/": {
                "get": {
                    "summary": "The demo page: a photo or the webcam, on the server or in the browser",
                    "responses": {"200": {"description": "the page", "content": {"text/html": {}}}},
                }
            },
            "/static/{path}": {
                "get": {
                    "summary": "The page's scripts, onnxruntime-web, the ONNX models and config.json",
                    "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "the file"}, "404": _ERROR},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        },
    }
