"""Files written whole or not at all, and their checksums (Python 3.6 compatible, standard library).

Every artifact, sidecar, bundle and config fer-edge writes goes through :func:`atomic_file`: a
temporary name in the same folder, renamed into place only when complete, removed on failure, so a
crash or a full disk never leaves half a file under the real name.
"""

import contextlib
import hashlib
import os
import shutil
from typing import IO, Any

BLOCK = 1 << 20


def sha256_file(path):
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_file(path, binary=False, mode=None):
    """``with atomic_file(path) as handle:`` write to ``handle``; ``path`` appears only when the block
    ends without an exception (a temporary file beside it, then ``os.replace``). ``mode``: the file's
    permission bits from its creation (e.g. 0o600 for secrets), else the process's default."""
    tmp = "{}.tmp{}".format(path, os.getpid())
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomic(path, data, mode=None):
    """Write ``data`` (text or bytes) to ``path`` whole or not at all; returns ``path``."""
    with atomic_file(path, binary=isinstance(data, bytes), mode=mode) as handle:
        handle.write(data)
    return path


def copy_atomic(source, path):
    """Copy file ``source`` to ``path`` whole or not at all; returns ``path``."""
    with open(source, "rb") as src, atomic_file(path, binary=True) as handle:
        shutil.copyfileobj(src, handle)
    return path
