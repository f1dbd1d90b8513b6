"""Who may see the live view: a credential beyond loopback, failed attempts rate-limited, HTTPS.

A view listening on a loopback address (127.0.0.1, ::1) is open, as it always was: only this
machine (or an SSH tunnel) reaches it. Anywhere else it shows a camera to the network, so it needs
a credential (config ``view_token_file``: a file whose first line is the token or password, at
least ``MIN_SECRET`` characters) or it refuses to start. A browser asks for it (HTTP Basic: any
user name, the token as the password); a script sends ``Authorization: Bearer <token>``. The
check is in constant time (``hmac.compare_digest`` of SHA-256 digests, so neither the content nor
the length shows in the timing). An address that fails ``MAX_FAILURES`` times within ``WINDOW``
seconds is refused (429) for ``LOCKOUT`` seconds, whatever it sends. ``view_cert_file`` and
``view_key_file`` (PEM) serve the view over HTTPS (:func:`tls_context`); without them the token
and the images cross the network in clear, and the log says so.
Python 3.6 compatible (device code): stdlib only.
"""

import base64
import binascii
import collections
import hashlib
import hmac
import ipaddress
import logging
import ssl
import threading
import time

from edge.view.server import LiveViewError

log = logging.getLogger(__name__)

MIN_SECRET = 12  # characters of the view's token or password
MAX_FAILURES = 5  # failed attempts from one address ...
WINDOW = 60.0  # ... within this many seconds ...
LOCKOUT = 60.0  # ... refuse it for this long
MAX_ADDRESSES = 4096  # addresses remembered (the oldest forgotten first)
REALM = 'Basic realm="fer-edge live view", charset="UTF-8"'
HOW = (
    "give it a token or password in a file (config view_token_file, flag --view-token-file; e.g. "
    "`openssl rand -hex 16 > view-token; chmod 600 view-token`; the browser asks for it: any user "
    "name, the token as the password), and for HTTPS a certificate pair (view_cert_file and "
    "view_key_file); or bind 127.0.0.1 (--view 127.0.0.1:PORT) and reach it through an SSH tunnel"
)


def is_loopback(host):
    """True when ``host`` (a bound address) is a loopback address: 127.0.0.0/8, ::1 (or ::ffff:127.x)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _digest(text):
    return hashlib.sha256(text.encode("utf-8")).digest()


def presented(header):
    """The secret an ``Authorization`` header presents (Basic: the password; Bearer: the token), or None."""
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeError):
            return None
        return decoded.partition(":")[2]
    return None


class FailedAttempts(object):
    """Failed credentials per client address; an address with ``max_failures`` of them within
    ``window`` seconds is locked for ``lockout`` seconds. Bounded: ``max_addresses`` remembered."""

    def __init__(
        self, max_failures=MAX_FAILURES, window=WINDOW, lockout=LOCKOUT, max_addresses=MAX_ADDRESSES, clock=None
    ):
        self.max_failures, self.window, self.lockout = int(max_failures), float(window), float(lockout)
        self.max_addresses = int(max_addresses)
        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._seen = collections.OrderedDict()  # address -> [failure times], or the end of its lockout

    def locked(self, address):
        """Seconds ``address`` stays refused (0: it may try)."""
        now = self.clock()
        with self._lock:
            entry = self._seen.get(address)
            if isinstance(entry, float):
                if entry > now:
                    return entry - now
                del self._seen[address]
            return 0.0

    def failed(self, address):
        """Count a failure; True when it locks ``address``."""
        now = self.clock()
        with self._lock:
            entry = self._seen.pop(address, None)
            times = [t for t in (entry if isinstance(entry, list) else ()) if now - t < self.window] + [now]
            locks = len(times) >= self.max_failures
            self._seen[address] = now + self.lockout if locks else times
            while len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
            return locks

    def __len__(self):
        """Addresses remembered (failing or locked)."""
        with self._lock:
            return len(self._seen)

    def succeeded(self, address):
        with self._lock:
            entry = self._seen.get(address)
            if isinstance(entry, list):
                del self._seen[address]


class Access(object):
    """The view's gate: ``refusal(authorization header, client address)`` is None when the request
    may pass, else (status, body, extra headers) to answer. ``secret`` None: open (loopback only)."""

    def __init__(self, secret=None, attempts=None):
        if secret is not None and len(secret) < MIN_SECRET:
            raise LiveViewError(
                "live view: the token or password is {} characters; it needs at least {} characters "
                "(e.g. `openssl rand -hex 16`)".format(len(secret), MIN_SECRET)
            )
        self._digest = _digest(secret) if secret is not None else None
        self.attempts = attempts or FailedAttempts()
        self.unauthorized = 0  # requests answered 401 or 429

    @property
    def required(self):
        return self._digest is not None

    def refusal(self, header, address):
        if self._digest is None:
            return None
        left = self.attempts.locked(address)
        if left:
            self.unauthorized += 1
            return (
                429,
                b"fer-edge live view: too many failed attempts; try again later\n",
                (("Retry-After", str(int(left) + 1)),),
            )
        given = presented(header)
        if given is not None and hmac.compare_digest(_digest(given), self._digest):
            self.attempts.succeeded(address)
            return None
        self.unauthorized += 1
        if given is not None and self.attempts.failed(address):
            log.warning(
                "live view: %d failed attempts from %s within %.0f s: refused for %.0f s",
                self.attempts.max_failures,
                address,
                self.attempts.window,
                self.attempts.lockout,
            )
        return 401, b"fer-edge live view: credentials required\n", (("WWW-Authenticate", REALM),)


def tls_context(cert_file, key_file):
    """A server-side ssl.SSLContext from a PEM certificate (with its chain) and its key (TLS 1.2+)."""
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3 | ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise LiveViewError(
            "live view: cannot use the certificate {} with the key {} ({})".format(cert_file, key_file, exc)
        ) from exc
    return context
