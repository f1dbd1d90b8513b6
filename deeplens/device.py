"""The AWS DeepLens device library, loaded on demand: ``awscam`` (camera and inference) and ``mo``
(the DeepLens model optimizer).

These two modules exist only on a DeepLens (device software 1.4.5+ for the Python 3.7 Lambda
runtime). This module is the one place of fer-edge that imports them, inside functions, with a
message that says so when they are missing; it imports nothing but the standard library at module
import, so the Lambda entry can call :func:`preload` before anything imports OpenCV: AWS's
DeepLens guide says the device's ``cv2`` depends on ``awscam`` and asks Lambda functions to import
``awscam`` before ``cv2``.

Python 3.6/3.7 compatible (device code).
"""

import importlib
import logging

log = logging.getLogger(__name__)

NOT_ON_DEEPLENS = (
    "the AWS DeepLens device library module '{}' is not importable here ({}): it is part of "
    "the DeepLens device software (/opt/awscam) and exists only on the device, inside the "
    "Greengrass Lambda runtime. Off the device, run the edge agent with the OpenVINO IR instead "
    "(docs/deeplens.md, 'Standalone')."
)


class DeviceLibraryMissing(ImportError):
    """``awscam`` or ``mo`` cannot be imported: not on a DeepLens (the message says what to do)."""


def _load(name):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DeviceLibraryMissing(NOT_ON_DEEPLENS.format(name, exc)) from exc


def load_awscam():
    """The ``awscam`` module (``getLastFrame``, ``Model``); DeviceLibraryMissing off the device."""
    return _load("awscam")


def load_mo():
    """The ``mo`` module (``optimize``); DeviceLibraryMissing off the device."""
    return _load("mo")


def preload():
    """Import ``awscam`` first (before OpenCV) when it exists; True on a DeepLens, False elsewhere."""
    try:
        load_awscam()
    except DeviceLibraryMissing as exc:
        log.debug("%s", exc)
        return False
    return True
