"""``fer-edge``: one CLI, thin subcommands over library functions.

Heavy imports (TensorFlow, Keras) happen inside the subcommand that needs them, so
``fer-edge --help`` and device-side subcommands stay fast.
"""

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Sequence

from train.quiet import quiet_tensorflow


def _print_counts(counts):
    from edge.labels import EMOTIONS

    for split, (mode, rows, kept, per_class) in counts.items():
        print("{} ({} mode): {} of {} faces labelled".format(split, mode, kept, rows))
        print("  " + "  ".join("{} {}".format(e, int(n)) for e, n in zip(EMOTIONS, per_class)))


def cmd_data_build(args: argparse.Namespace) -> int:
    from train.dataset import read_source, save_cache, split_counts

    data = read_source(args.src, kaggle=args.kaggle, ferplus_votes=args.ferplus_votes)
    for note in data.notes:
        print("note: " + note)
    save_cache(data, args.out)
    print("wrote {} ({} faces)".format(args.out, len(data)))
    _print_counts(split_counts(data, args.mode))
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from train.dataset import read_source, split_counts

    _print_counts(split_counts(read_source(args.data), args.mode))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from train.config import TrainConfig
    from train.trainer import train

    if args.resume:
        config = TrainConfig.in_run(args.resume)
        config.run_dir = args.resume
        if args.epochs:
            config.epochs = args.epochs
    else:
        config = TrainConfig.load(args.config) if args.config else TrainConfig()
        for field in dataclasses.fields(TrainConfig):
            value = getattr(args, field.name, None)
            if value is not None:
                setattr(config, field.name, value)
        if not config.data:
            raise ValueError("no training data: give --data (a FERPlus folder, .tar.gz or .npz cache)")
    metrics = train(config, resume=bool(args.resume))
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    from train.teacher import compute_teacher

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    summary = compute_teacher(
        args.data,
        models,
        args.out,
        args.mode,
        args.limit,
        args.batch_size,
        args.threads,
        log=lambda line: print(line, flush=True),
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from train.evaluate import evaluate

    report = evaluate(
        args.model, args.data, args.split, out_dir=args.out, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report["text"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from train.export import export_savedmodel

    path = export_savedmodel(
        args.model, args.out, force=args.force, flip_average=args.flip_average, data=args.data, name=args.name
    )
    print("exported SavedModel with metadata to {}".format(path))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from convert.formats import converter

    options = {"data": args.data, "faces": args.faces, "force": args.force, "limit": args.check_faces, "log": print}
    specific = {"opset": ("onnx", "tensorrt"), "precision": ("tensorrt",), "max_batch": ("tensorrt",)}
    for option, formats in specific.items():
        value = getattr(args, option)
        if value is None:
            continue
        if args.format not in formats:
            raise ValueError("--{} applies to {} only".format(option.replace("_", "-"), " and ".join(formats)))
        options[option] = value
    path = converter(args.format)(args.model, args.out, **options)
    print("wrote {} artifact {}".format(args.format, path))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .run import cmd_run as run

    return run(args)


def cmd_image(args: argparse.Namespace) -> int:
    from .run import cmd_image as image

    return image(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.command import cmd_serve as serve

    return serve(args)


def cmd_web(args: argparse.Namespace) -> int:
    from .web.command import cmd_web as web

    return web(args)


def broker_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client options (credentials, TLS, client id) of a command's broker access flags."""
    from edge.delivery.settings import from_config

    config = dict(
        (key, getattr(args, key, None))
        for key in ("username", "ca_file", "cert_file", "key_file", "client_id", "alpn", "password_file")
    )
    config.update(broker=args.broker, tls_insecure=bool(args.tls_insecure))
    settings = from_config(config)  # the URL checked (no password in it), TLS files, the password read once
    options = settings.client_options()
    if settings.client_id:
        options["client_id"] = settings.client_id
    return options


def cmd_homeassistant(args: argparse.Namespace) -> int:
    """``fer-edge homeassistant remove``: empty retained discovery configs from a bare client."""
    from .homeassistant_remove import remove_discovery

    topics = remove_discovery(
        args.broker, args.device_id, args.homeassistant_prefix, timeout=args.timeout, **broker_options(args)
    )
    print("removed the Home Assistant entities of {}: cleared {}".format(args.device_id, ", ".join(topics)))
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    from .subscribe_checks import MessageCheck
    from .subscribe_lines import run_subscriber
    from .subscribe_table import DeviceTable, run_table

    options = broker_options(args)
    kinds = subscribe_kinds(args.kinds)
    table = DeviceTable()
    checks = table.checks if args.table else MessageCheck()  # invalid messages: skipped, counted
    count, interrupted = 0, False
    try:
        if args.table:
            run_table(
                args.broker,
                device_id=args.device_id,
                prefix=args.topic_prefix,
                refresh=args.refresh,
                timeout=args.timeout,
                resume=args.since,
                kinds=kinds,
                table=table,
                **options,
            )
        else:
            count = run_subscriber(
                args.broker,
                device_id=args.device_id,
                prefix=args.topic_prefix,
                json_mode=args.json,
                max_messages=args.count,
                timeout=args.timeout,
                resume=args.since,
                kinds=kinds,
                checks=checks,
                **options,
            )
    except KeyboardInterrupt:
        interrupted = True
    skipped = checks.summary()
    if skipped:
        print("fer-edge subscribe: {}".format(skipped), file=sys.stderr)
    return 0 if interrupted or args.table or count or not args.count else 1


def subscribe_kinds(text: str | None) -> tuple[str, ...]:
    """``--kinds events,tracks`` -> ``("events", "tracks")``; every kind when empty; an unknown one is an error."""
    from edge.delivery.url import TOPIC_KINDS

    if not text:
        return TOPIC_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in TOPIC_KINDS]
    if unknown or not kinds:
        what = "unknown topic kind " + ", ".join(unknown) if unknown else "no topic kind"
        raise ValueError("--kinds {!r}: {}; expected some of {}".format(text, what, ",".join(TOPIC_KINDS)))
    return kinds


def cmd_bench(args: argparse.Namespace) -> int:
    if args.section == "detect":
        return cmd_bench_detect(args)
    if args.section == "serve":
        from . import bench_serve, bench_serve_ray

        if args.ray:
            report = bench_serve_ray.run(args.model, requests=args.requests, ray_python=args.ray_python)
        else:
            report = bench_serve.run(args.model, requests=args.requests, browser_frames=args.browser_frames)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(report, handle, indent=2)
        print(report["markdown"])
        return 0
    if args.section == "models":
        from . import bench_models

        names = [m.strip() for m in (args.models or "").split(",") if m.strip()]
        report = bench_models.run(names or None, args.data, rounds=args.rounds)
        bench_models.write(report, args.json)
        print(report["markdown"])
        return 0
    from .bench import run

    report = run(args.model, args.data, args.peer, args.frames, args.json, args.markdown)
    print(report["markdown"])
    return 0


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from convert.parity import default_data_path

    from .bench import ensure_peer
    from .bench_calibrate import CROP_FILE
    from .bench_detect import run

    data = args.data or default_data_path()
    if not data:
        raise ValueError(
            "fer-edge bench detect builds its scenes from FER+ Valid faces: give --data (or set "
            "FER_EDGE_DATA to the folder holding ferplus-trainval.tar.gz)"
        )
    if args.calibrate:
        report = run(
            data,
            counts={"calibrate": args.scenes or 200},
            calibrate_only=True,
            min_face=args.min_face,
            out_json=args.json or CROP_FILE,
        )
        print(
            "wrote {} (then `make detector-models` puts it into the detectors' metadata)".format(args.json or CROP_FILE)
        )
        return 0
    n = args.scenes or 60
    python = ensure_peer(print) if args.peer == "fer" else None
    report = run(
        data,
        counts={"near": n, "far": max(1, n // 2), "tilted": max(1, (2 * n) // 3)},
        repeats=args.repeats,
        min_face=args.min_face,
        out_json=args.json,
        out_md=args.markdown,
        peer_python=python,
    )
    print(report["markdown"])
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from edge.classifier import NAMED_MODELS, SHIPPED_MODEL, resolve_model

    if args.target == "greengrass":
        from fer_edge.bundles.greengrass import run_command

        args.model = resolve_model(
            args.model
        )  # a shipped model's name (default = balanced, accurate, fast, fast-accurate, deep-emotion) or a path
        return run_command(args)
    if args.target == "jetson":
        from fer_edge.bundles.jetson import build_bundle

        path = build_bundle(args.out, model_onnx=resolve_model(args.model), version=args.version)
        print("wrote the Jetson bundle {} (install: docs/jetson.md)".format(path))
        return 0
    from fer_edge.bundles.deeplens import build_bundle as build_deeplens

    savedmodel = args.savedmodel
    for name in (args.savedmodel, args.model):
        if name in NAMED_MODELS:  # `--model fast`: that shipped model's SavedModel, converted here
            savedmodel = os.path.join(os.path.dirname(os.path.dirname(resolve_model(name))), "saved_model")
            args.model = None
    if not args.model and not savedmodel:
        savedmodel = os.path.join(os.path.dirname(os.path.dirname(SHIPPED_MODEL)), "saved_model")
    paths = build_deeplens(args.out, model_artifact=args.model, savedmodel=savedmodel, data=args.data)
    print("Lambda zip: {}\nmodel artifact: {}".format(paths["zip"], paths.get("model")))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.target == "greengrass":
        from fer_edge.bundles.greengrass_deploy import run_command

        return run_command(args)
    missing = [
        flag
        for flag, value in (("--function", args.function), ("--zip", args.zip), ("--model", args.model))
        if not value
    ]
    if missing:
        raise ValueError("fer-edge deploy deeplens needs {}".format(", ".join(missing)))
    from fer_edge.bundles.deeplens_deploy import deploy

    environment = dict(kv.split("=", 1) for kv in args.env or [])
    result = deploy(
        args.bucket,
        args.function,
        args.zip,
        args.model,
        args.region,
        role_arn=args.role,
        endpoint_url=args.endpoint_url,
        runtime=args.runtime,
        environment=environment or None,
        require_deeplens_name=not args.allow_any_name,
    )
    print(json.dumps(result, indent=2))
    return 0


HANDLERS = {
    "data_build": cmd_data_build,
    "data_stats": cmd_data_stats,
    "train": cmd_train,
    "teacher": cmd_teacher,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "convert": cmd_convert,
    "run": cmd_run,
    "image": cmd_image,
    "serve": cmd_serve,
    "web": cmd_web,
    "subscribe": cmd_subscribe,
    "homeassistant": cmd_homeassistant,
    "bench": cmd_bench,
    "bundle": cmd_bundle,
    "deploy": cmd_deploy,
}


def build_parser() -> argparse.ArgumentParser:
    from .cli_parser import build_parser as build

    return build(HANDLERS)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(getattr(args, "command", None))
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print("fer-edge {}: error: {}".format(args.command, exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
