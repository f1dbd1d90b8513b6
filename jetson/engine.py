"""TensorRT engines on the device that runs them: naming, the one staleness rule, build-or-reuse with
the on-device check, back-off after a failed build, and the engine CLI.

    python3 -m jetson.engine model/model.onnx --check model/model.check.npz [--precision fp16] [--force]

Device code: Python 3.6 syntax; the standard library and numpy at import (TensorRT and pycuda are
imported by the functions that use them, through ``jetson.trt_backend``).

Engines are specific to the TensorRT version and the GPU, so an engine file is named
``<stem>.trt<version>.<precision>.<gpu-slug>.sm<capability>.engine`` (e.g.
``model.trt8.2.1.8.fp16.nvidia-tegra-x1.sm53.engine``) and comes with a JSON sidecar
(``<engine>.fer_edge.json``): the model's metadata plus an ``engine`` section (sha256 of the source
ONNX, the runtime key, precision, batch range, the equivalent trtexec command and the check result).

The runtime key (:func:`runtime_key`): TensorRT version, GPU name, compute capability and CUDA driver
version. :func:`runtime_staleness` is the one rule saying whether an engine can run here (the backend
applies it to every ``.engine`` it loads); :func:`engine_staleness` adds what makes a built engine
stale for its ONNX (checksum, precision, max batch).

:func:`build_or_reuse` builds an engine only when one is stale, then runs it through
``TensorRTBackend`` (the class the agent runs) on the check set the bundle carries
(``jetson.engine_check``): an engine outside tolerance is deleted and refused with the numbers. A
build or check that fails leaves ``<engine>.failed.json``; until its back-off has passed (5 minutes,
doubling per failure, at most 6 hours) the service's next start fails at once with the reason
instead of rebuilding for minutes; ``python3 -m jetson --build-engine`` (a person asking) retries now.
"""

import argparse
import datetime
import json
import os
import sys
import time

from edge import metadata as md
from edge.backends.base import BackendError
from edge.files import atomic_file, sha256_file
from edge.onnx_meta import onnx_model_metadata
from jetson import engine_check, onnx_ops
from jetson.engine_build import TensorRTBuilder
from jetson.engine_info import (  # noqa: F401
    ENGINE_SUFFIX,
    RUNTIME_FIELDS,
    engine_filename,
    engine_staleness,
    read_engine_info,
    runtime_key,
    runtime_staleness,
    slug,
)
from jetson.trt_runtime import DEFAULT_MAX_BATCH, DEFAULT_PRECISION, device_info, import_tensorrt

FAILED_SUFFIX = ".failed.json"
ENGINE_DIR_ENV = "FER_EDGE_ENGINE_DIR"
STATE_DIR = "/var/lib/fer-edge"
DEFAULT_OPT_BATCH = 4
DEFAULT_WORKSPACE_MB = 256
BACKOFF_FIRST_S = 300
BACKOFF_MAX_S = 6 * 3600


class EngineError(BackendError):
    """No usable engine: the build, the check or the back-off says why."""


def default_engine_dir(onnx_path):
    """$FER_EDGE_ENGINE_DIR, else /var/lib/fer-edge/engines when /var/lib/fer-edge is writable, else
    the ONNX's own folder (engines are per device, so they live in the service's state folder)."""
    env = os.environ.get(ENGINE_DIR_ENV)
    if env:
        return env
    if os.path.isdir(STATE_DIR) and os.access(STATE_DIR, os.W_OK):
        return os.path.join(STATE_DIR, "engines")
    return os.path.dirname(os.path.abspath(str(onnx_path)))


def check_set_beside(onnx_path):
    """The check set the bundle ships beside an ONNX (``model.onnx`` -> ``model.check.npz``), or None."""
    path = os.path.splitext(str(onnx_path))[0] + ".check.npz"
    return path if os.path.isfile(path) else None


# ---------------------------------------------------------------- failed builds: marker and back-off


def backoff_seconds(attempts):
    return min(BACKOFF_FIRST_S * (2 ** max(0, int(attempts) - 1)), BACKOFF_MAX_S)


def _read_failure(engine_path):
    try:
        with open(engine_path + FAILED_SUFFIX, "r") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_failure(engine_path, build_key, reason, clock):
    previous = _read_failure(engine_path)
    attempts = previous["attempts"] + 1 if previous and previous.get("key") == build_key else 1
    record = {
        "key": build_key,
        "attempts": attempts,
        "epoch": clock(),
        "reason": str(reason),
        "when": datetime.datetime.utcfromtimestamp(clock()).replace(microsecond=0).isoformat() + "Z",
        "retry_after_s": backoff_seconds(attempts),
    }
    try:
        with atomic_file(engine_path + FAILED_SUFFIX) as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
    except OSError:
        pass  # the build error itself is what the caller reports
    return record


def failure_in_backoff(engine_path, build_key, clock=time.time):
    """The failure record when the last build of this exact engine failed less than its back-off ago."""
    record = _read_failure(engine_path)
    if not record or record.get("key") != build_key:
        return None
    if clock() - float(record.get("epoch", 0)) >= backoff_seconds(record.get("attempts", 1)):
        return None
    return record


# ---------------------------------------------------------------- build or reuse


def _say(log, message):
    if log is not None:
        log(message)


def build_or_reuse(
    onnx_path,
    out_dir=None,
    precision=DEFAULT_PRECISION,
    max_batch=DEFAULT_MAX_BATCH,
    opt_batch=DEFAULT_OPT_BATCH,
    workspace_mb=DEFAULT_WORKSPACE_MB,
    calibration_faces=None,
    check=None,
    meta=None,
    stem=None,
    force=False,
    log=print,
    builder=None,
    clock=time.time,
    retry_failed=False,
):
    """The engine for ``onnx_path`` on this GPU: reused when current, else built and checked; its path.

    ``check``: a check set (``jetson.engine_check.CheckSet``) or the path of its .npz, verified
    through ``TensorRTBackend`` after a build (and once on a reused engine never checked);
    ``builder``: the TensorRT builder (``jetson.engine_build.TensorRTBuilder``; tests pass a double);
    ``retry_failed``: build even within the back-off of a failed build (a person asked for it).
    Raises EngineError (a BackendError) saying why no engine can be had.
    """
    onnx_path = os.path.abspath(str(onnx_path))
    if not os.path.isfile(onnx_path):
        raise EngineError("{}: ONNX model not found".format(onnx_path))
    onnx_ops.check_for_tensorrt(onnx_path, EngineError)  # opset and operators, before TensorRT loads
    trt = import_tensorrt()
    here = device_info()
    if builder is None:
        builder = TensorRTBuilder(trt)
    meta = md.validate(meta if meta is not None else onnx_model_metadata(onnx_path))
    if md.kind_of(meta) == md.CLASSIFIER and meta["input"]["layout"] != "NCHW":
        raise EngineError(
            "{}: metadata layout {} (TensorRT engines take the NCHW ONNX)".format(onnx_path, meta["input"]["layout"])
        )
    if max_batch < 1:
        raise EngineError("max batch must be >= 1, got {}".format(max_batch))
    checks = engine_check.load_check_set(check) if isinstance(check, str) else check
    out_dir = os.path.abspath(str(out_dir or os.path.dirname(onnx_path)))
    os.makedirs(out_dir, exist_ok=True)
    stem = stem or os.path.splitext(os.path.basename(onnx_path))[0]
    key = runtime_key(trt.__version__, here)
    actual = builder.effective_precision(precision, log)
    engine_path = os.path.join(
        out_dir, engine_filename(stem, trt.__version__, actual, here.name, here.compute_capability)
    )
    onnx_sha = sha256_file(onnx_path)
    if checks is not None and checks.onnx_sha256 and checks.onnx_sha256 != onnx_sha:
        _say(
            log,
            "the check set {} belongs to another version of {} (sha256 differs): the engine cannot be "
            "verified with it (ship the model's own check set from `fer-edge bundle jetson`)".format(
                checks.path, os.path.basename(onnx_path)
            ),
        )
        checks = None
    build_key = dict(key, onnx_sha256=onnx_sha, precision=actual, max_batch=int(max_batch))
    reason = "rebuild forced" if force else engine_staleness(engine_path, onnx_path, key, max_batch, actual, onnx_sha)
    if reason is None:
        info = read_engine_info(engine_path)
        if checks is not None and not info["engine"].get("check"):
            _say(log, "checking the existing engine {} (never checked)".format(os.path.basename(engine_path)))
            info["engine"]["check"] = _check_or_refuse(engine_path, meta, checks, actual, build_key, log, clock)
            md.write(info, md.sidecar_path(engine_path))
        _say(log, "reusing {} (matches the ONNX, TensorRT {} and {})".format(engine_path, trt.__version__, here.name))
        return engine_path
    failed = None if (force or retry_failed) else failure_in_backoff(engine_path, build_key, clock)
    if failed is not None:
        wait = int(float(failed["epoch"]) + backoff_seconds(failed["attempts"]) - clock())
        raise EngineError(
            "the last build of {} failed at {} ({} attempt(s)): {}; the next automatic attempt is in "
            "{} min; `python3 -m jetson --build-engine` retries now".format(
                os.path.basename(engine_path), failed["when"], failed["attempts"], failed["reason"], max(1, wait // 60)
            )
        )
    _say(log, "building {}: {}".format(os.path.basename(engine_path), reason))
    calib_cache = os.path.join(out_dir, "{}.trt{}.calib".format(stem, trt.__version__)) if actual == "int8" else None
    input_name = meta["input"].get("name", "face")
    command = builder.trtexec_command(
        os.path.basename(onnx_path),
        os.path.basename(engine_path),
        actual,
        input_name,
        tuple(md.input_shape(meta)[1:]),
        max_batch,
        opt_batch,
        workspace_mb,
        calib_cache and os.path.basename(calib_cache),
    )
    _say(log, "equivalent trtexec command (in {}):\n  {}".format(out_dir, command))
    sidecar = md.sidecar_path(engine_path)
    if os.path.exists(sidecar):
        os.remove(sidecar)  # an engine without its sidecar is never taken as current
    try:
        actual, input_name, output_names = builder.build(
            onnx_path,
            engine_path,
            meta,
            actual,
            max_batch,
            opt_batch,
            workspace_mb,
            calibration_faces,
            calib_cache,
            log,
        )
    except BackendError as exc:
        _write_failure(engine_path, build_key, exc, clock)
        raise EngineError("cannot build a TensorRT engine for {}: {}".format(onnx_path, exc)) from exc
    info = dict(meta)
    info["engine"] = dict(
        key,
        **{
            "file": os.path.basename(engine_path),
            "onnx": os.path.basename(onnx_path),
            "onnx_sha256": onnx_sha,
            "precision": actual,
            "requested_precision": precision,
            "input": input_name,
            "output": output_names[0],
            "outputs": list(output_names),
            "min_batch": 1,
            "opt_batch": max(1, min(opt_batch, max_batch)),
            "max_batch": int(max_batch),
            "workspace_mb": int(workspace_mb),
            "built": datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
            "trtexec": command,
            "check": None,
        },
    )
    md.write(info, sidecar)  # the backend that runs the check reads it
    if checks is not None:
        info["engine"]["check"] = _check_or_refuse(engine_path, meta, checks, actual, build_key, log, clock)
        md.write(info, sidecar)
    else:
        _say(log, "engine not verified numerically: no check set given (the bundle ships model/*.check.npz)")
    if os.path.exists(engine_path + FAILED_SUFFIX):
        os.remove(engine_path + FAILED_SUFFIX)
    return engine_path


def _check_or_refuse(engine_path, meta, checks, precision, build_key, log, clock):
    """The check report (a dict); on a mismatch the engine is deleted, the failure recorded, EngineError."""
    try:
        report = engine_check.verify_engine(engine_path, meta, checks, precision)
    except BackendError as exc:
        for path in (engine_path, md.sidecar_path(engine_path)):
            if os.path.exists(path):
                os.remove(path)
        _write_failure(engine_path, build_key, exc, clock)
        raise EngineError("{}: refused: {}".format(os.path.basename(engine_path), exc)) from exc
    _say(log, report.summary())
    return report.as_dict()


def ensure_engine(
    onnx_path,
    precision=DEFAULT_PRECISION,
    max_batch=DEFAULT_MAX_BATCH,
    engine_dir=None,
    log=print,
    force=False,
    stem=None,
    check="beside",
    builder=None,
    clock=time.time,
    retry_failed=False,
):
    """The path of a current, checked TensorRT engine for ``onnx_path`` in the engine folder.

    ``check``: a check set, its .npz path, None (no check), or "beside": the ``<model>.check.npz``
    the bundle ships next to the ONNX when there is one. Raises BackendError with the reason.
    """
    onnx_path = str(onnx_path)
    if not os.path.isfile(onnx_path):
        raise EngineError("{}: ONNX model not found".format(onnx_path))
    if check == "beside":
        check = check_set_beside(onnx_path)
    engine_dir = engine_dir or default_engine_dir(onnx_path)
    try:
        os.makedirs(engine_dir, exist_ok=True)
    except OSError as exc:
        raise EngineError(
            "cannot create the engine folder {} ({}); set {} or --engine-dir".format(engine_dir, exc, ENGINE_DIR_ENV)
        ) from exc
    if not os.access(engine_dir, os.W_OK):
        raise EngineError(
            "engine folder {} is not writable by this user; set {} or --engine-dir".format(engine_dir, ENGINE_DIR_ENV)
        )
    try:
        return build_or_reuse(
            onnx_path,
            engine_dir,
            precision=precision,
            max_batch=int(max_batch),
            force=force,
            log=log,
            stem=stem,
            check=check,
            builder=builder,
            clock=clock,
            retry_failed=retry_failed,
        )
    except (md.MetadataError, OSError) as exc:
        raise EngineError("cannot get a TensorRT engine for {}: {}".format(onnx_path, exc)) from exc


# ---------------------------------------------------------------- CLI


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m jetson.engine",
        description="Build (or reuse) and check the TensorRT engine of a fer-edge ONNX model on this GPU.",
    )
    parser.add_argument("onnx", help="ONNX model with fer-edge metadata (the bundle's model/*.onnx)")
    parser.add_argument(
        "--out-dir",
        help="folder for the engine and its sidecar (default: ${} or {}/engines)".format(ENGINE_DIR_ENV, STATE_DIR),
    )
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=DEFAULT_PRECISION)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--opt-batch", type=int, default=DEFAULT_OPT_BATCH)
    parser.add_argument("--workspace-mb", type=int, default=DEFAULT_WORKSPACE_MB)
    parser.add_argument("--calibration-faces", help=".npy of uint8 faces [N,48,48] for INT8 calibration")
    parser.add_argument("--check", help="check set .npz (default: <model>.check.npz beside the ONNX when present)")
    parser.add_argument("--force", action="store_true", help="rebuild even when current")
    args = parser.parse_args(argv)
    try:
        import numpy as np

        calib = np.load(args.calibration_faces, allow_pickle=False) if args.calibration_faces else None
        check = args.check or check_set_beside(args.onnx)
        out_dir = args.out_dir or default_engine_dir(args.onnx)
        os.makedirs(out_dir, exist_ok=True)
        path = build_or_reuse(
            args.onnx,
            out_dir,
            args.precision,
            args.max_batch,
            args.opt_batch,
            args.workspace_mb,
            calib,
            check,
            force=args.force,
            log=print,
            retry_failed=True,
        )
    except (BackendError, ValueError, OSError) as exc:
        print("jetson.engine: error: {}".format(exc), file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
