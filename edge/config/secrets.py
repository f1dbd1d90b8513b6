"""Secrets of the agent's configuration: the broker password, from a file or the environment, never
from a config file and never logged (Python 3.6 compatible)."""

import logging
import os
import stat

from edge.config.options import PASSWORD_ENV

log = logging.getLogger(__name__)


def read_secret(path):
    """A secret from a file (first line, stripped); never logged. A file that every user of the
    machine may read is warned about (the secret is then not one)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        log.warning(
            "password file %s is readable by every user of this machine (mode %04o): chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )
    with open(path, "r", encoding="utf-8") as handle:
        return handle.readline().strip()


def broker_password(config, env=None):
    """The broker password: ``password_file``'s first line, else ``$FER_EDGE_PASSWORD``, else
    None. Never logged; never read from a config file."""
    if config.get("password_file"):
        return read_secret(config["password_file"])
    env = os.environ if env is None else env
    return env.get(PASSWORD_ENV) or None
