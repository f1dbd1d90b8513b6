"""Request bytes -> a BGR image, or an ``InputError`` naming what was wrong.

Checked before any pixel is decoded: the declared type, the size (none, or more than the limit), the
format from the first bytes (JPEG, PNG or WebP), the width and height from the header (zero, or more
pixels than the limit: a small file that decodes to a huge image is refused unread), and a
truncated file (JPEG without its end marker, PNG without IEND, WebP shorter than its RIFF size).
The bytes are never stored or logged.
"""

import struct

import numpy as np

FORMATS = ("jpeg", "png", "webp")
ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/*", "application/octet-stream")


class InputError(Exception):
    """A request the service refuses: ``status`` (4xx), ``code`` (a short word), the message says why."""

    def __init__(self, status: int, code: str, message: str):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.message = message


def sniff(data: bytes) -> str | None:
    """The image format from the first bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def image_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from the header of a ``kind`` image, or None when the header does not say."""
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if kind == "jpeg":
        return _jpeg_size(data)
    return _webp_size(data)


def _truncated(data: bytes, kind: str) -> bool:
    if kind == "jpeg":
        return not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if kind == "png":
        return b"IEND" not in data[-16:]
    (size,) = struct.unpack("<I", data[4:8])
    return len(data) < size + 8


def check_type(content_type: str) -> None:
    """Refuse (415) a body whose Content-Type is not an image type."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES and not media.startswith("image/"):
        raise InputError(
            415,
            "unsupported_media_type",
            "Content-Type {!r}: send the image as the body with an image/* type (JPEG, PNG, WebP), or as "
            "the field 'image' of multipart/form-data".format(media or "(none)"),
        )


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """A BGR uint8 image from JPEG, PNG or WebP bytes, checked as the module says."""
    import cv2

    if not data:
        raise InputError(400, "empty", "the image is empty (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise InputError(415, "not_an_image", "the body is not a JPEG, PNG or WebP image")
    size = image_size(data, kind)
    if size is None:
        raise InputError(400, "unreadable", "the {} header is damaged or incomplete".format(kind.upper()))
    width, height = size
    if width == 0 or height == 0:
        raise InputError(400, "zero_size", "the {} image is {}x{} pixels".format(kind.upper(), width, height))
    if width * height > max_pixels:
        raise InputError(
            413,
            "too_many_pixels",
            "the image is {}x{} = {} pixels; at most {} are accepted".format(width, height, width * height, max_pixels),
        )
    if _truncated(data, kind):
        raise InputError(400, "truncated", "the {} image is truncated (its end is missing)".format(kind.upper()))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InputError(400, "unreadable", "the {} image could not be decoded".format(kind.upper()))
    return image
