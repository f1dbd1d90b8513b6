"""Who may call the service: open on loopback; beyond it, an API key (or an explicit authenticating proxy).

The key comes from a file (``--api-key-file``, first line, or the file named by ``$FER_EDGE_API_KEY_FILE``, as
containers mount secrets) or ``$FER_EDGE_API_KEY``; a client sends
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. The check is in constant time (``hmac.compare_digest``
of SHA-256 digests). An address that fails too often is refused for a while (429), as the live view does.
"""

import hashlib
import hmac
import os

from edge.config.secrets import read_secret
from edge.view.access import MIN_SECRET, FailedAttempts, is_loopback, presented

API_KEY_ENV = "FER_EDGE_API_KEY"
API_KEY_FILE_ENV = "FER_EDGE_API_KEY_FILE"
HOW = (
    "give it an API key: --api-key-file FILE (first line; e.g. `openssl rand -hex 16 > api-key; chmod 600 "
    "api-key`) or ${}=FILE or ${} ; or, when an authenticating reverse proxy sits in front of it, say so with "
    "--behind-auth-proxy; or listen on 127.0.0.1 (the default)".format(API_KEY_FILE_ENV, API_KEY_ENV)
)


class ServeConfigError(Exception):
    """The service cannot start as configured; the message says how to fix it."""


def load_api_key(path: str | None) -> str | None:
    """The API key from ``path`` (first line), else from the file $FER_EDGE_API_KEY_FILE names, else from
    $FER_EDGE_API_KEY, else None."""
    path = path or os.environ.get(API_KEY_FILE_ENV, "").strip() or None
    if path:
        try:
            key = read_secret(path)
        except OSError as exc:
            raise ServeConfigError("cannot read the API key file {}: {}".format(path, exc)) from exc
    else:
        key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        return None
    if len(key) < MIN_SECRET:
        raise ServeConfigError(
            "the API key is {} characters; it needs at least {} (e.g. `openssl rand -hex 16`)".format(
                len(key), MIN_SECRET
            )
        )
    return key


def check_exposure(host: str, key: str | None, behind_auth_proxy: bool) -> None:
    """Refuse to listen beyond loopback with neither an API key nor ``--behind-auth-proxy``."""
    if key is None and not behind_auth_proxy and not is_loopback(host):
        raise ServeConfigError(
            "fer-edge serve: refusing to listen on {} (beyond this machine) without an API key: {}".format(host, HOW)
        )


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class ApiKeyCheck:
    """``refusal(headers, address)``: None when the request may pass, else (status, message, headers)."""

    def __init__(self, key: str | None, attempts: FailedAttempts | None = None):
        self._digest = _digest(key) if key is not None else None
        self.attempts = attempts or FailedAttempts()

    @property
    def required(self) -> bool:
        return self._digest is not None

    def refusal(
        self, authorization: str | None, api_key: str | None, address: str
    ) -> tuple[int, str, dict[str, str]] | None:
        if self._digest is None:
            return None
        left = self.attempts.locked(address)
        if left:
            return (
                429,
                "too many failed attempts with a wrong API key; try again later",
                {"Retry-After": str(int(left) + 1)},
            )
        given = api_key.strip() if api_key else presented(authorization)
        if given and hmac.compare_digest(_digest(given), self._digest):
            self.attempts.succeeded(address)
            return None
        if given:
            self.attempts.failed(address)
        return (
            401,
            "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            {"WWW-Authenticate": 'Bearer realm="fer-edge serve"'},
        )
