"""The vendored onnxruntime-web files (`make web-vendor` puts them under ``static/vendor``)."""

import os

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
VENDOR_DIR = os.path.join(STATIC_DIR, "vendor")
# the wasm-only ES module build and its runtime (single-threaded use: no cross-origin isolation needed)
VENDOR_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


class VendorMissing(RuntimeError):
    """onnxruntime-web is not in the package: the message says how to get it."""


def vendor_files() -> dict[str, str]:
    """``vendor/NAME`` -> path of each vendored file; VendorMissing when one is absent."""
    missing = [n for n in VENDOR_FILES if not os.path.isfile(os.path.join(VENDOR_DIR, n))]
    if missing:
        raise VendorMissing(
            "onnxruntime-web is missing ({} under {}): run `make web-vendor` (npm install from the registry)".format(
                ", ".join(missing), VENDOR_DIR
            )
        )
    return dict(("vendor/" + n, os.path.join(VENDOR_DIR, n)) for n in VENDOR_FILES)
