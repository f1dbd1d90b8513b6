"""The ``fer-edge`` command line: every subcommand, option and default (``fer_edge.cli`` runs them)."""

import argparse
from typing import Callable, Mapping

from .pipeline_options import add_pipeline_options


def add_broker_access(p: argparse.ArgumentParser) -> None:
    """The broker access options of the commands that connect (credentials, TLS files)."""
    p.add_argument("--alpn", help="TLS ALPN protocols (automatic for AWS IoT Core on port 443)")
    p.add_argument(
        "--tls-insecure",
        dest="tls_insecure",
        action="store_true",
        help="do not verify the broker's host name (tests only)",
    )
    p.add_argument("--username")
    p.add_argument("--password-file", dest="password_file")
    p.add_argument("--ca-file", dest="ca_file")
    p.add_argument("--cert-file", dest="cert_file")
    p.add_argument("--key-file", dest="key_file")


def build_parser(handlers: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``fer-edge`` argument parser; ``handlers``: command name -> function (``fer_edge.cli``)."""
    parser = argparse.ArgumentParser(prog="fer-edge", description="Facial emotion recognition for edge devices.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data = sub.add_parser("data", help="read FER+ and write the compact dataset cache").add_subparsers(
        dest="data_command", metavar="ACTION"
    )
    data.required = True
    p = data.add_parser("build", help="FERPlus folder/.tar.gz or Kaggle csv pair -> .npz cache")
    p.add_argument("--src", help="FERPlus folder (FER2013Train/label.csv + PNGs) or a .tar/.tar.gz of it")
    p.add_argument("--kaggle", help="Kaggle fer2013.csv (emotion, pixels, Usage)")
    p.add_argument("--ferplus-votes", help="FER+ fer2013new.csv paired with --kaggle")
    p.add_argument("--out", default="data/ferplus.npz", help="cache to write (default: %(default)s)")
    p.add_argument("--mode", default="majority", help="label mode for the printed Train counts")
    p.set_defaults(func=handlers["data_build"])
    p = data.add_parser("stats", help="per-class counts of a dataset under a label mode")
    p.add_argument("--data", required=True)
    p.add_argument("--mode", default="majority")
    p.set_defaults(func=handlers["data_stats"])

    from train.config import ARCHITECTURES, RULE_MACRO_RECALL, RULE_MIN_RECALL, SELECTIONS, TrainConfig
    from train.labels import MODES

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a model on FER+ (writes a run directory)",
        description="Train an emotion classifier on FER+. Flags override --config; every default is shown in brackets.",
    )
    p.add_argument("--data", help="FERPlus folder, .tar.gz or .npz cache (`fer-edge data build`)")
    p.add_argument(
        "--run-dir", dest="run_dir", help="run directory (config, checkpoints, history) [{}]".format(d.run_dir)
    )
    p.add_argument("--config", help="JSON TrainConfig; flags override it")
    p.add_argument("--arch", choices=list(ARCHITECTURES), help="architecture [{}]".format(d.arch))
    p.add_argument("--size", type=int, help="input size; 0: the architecture's [{}]".format(d.size))
    p.add_argument("--mode", choices=list(MODES), help="FER+ label mode [{}]".format(d.mode))
    p.add_argument("--epochs", type=int, help="epochs [{}]".format(d.epochs))
    p.add_argument("--batch-size", dest="batch_size", type=int, help="[{}]".format(d.batch_size))
    p.add_argument("--optimizer", choices=("adamw", "sgd"), help="[{}]".format(d.optimizer))
    p.add_argument("--lr", type=float, help="peak learning rate (warm-up, then cosine) [{}]".format(d.lr))
    p.add_argument("--weight-decay", dest="weight_decay", type=float, help="[{}]".format(d.weight_decay))
    p.add_argument("--warmup-epochs", dest="warmup_epochs", type=int, help="[{}]".format(d.warmup_epochs))
    p.add_argument(
        "--patience",
        type=int,
        help="early stop after this many epochs without a better Valid score; 0: never [{}]".format(d.patience),
    )
    p.add_argument(
        "--no-augment", dest="augment", action="store_const", const=False, help="turn off the paper's augmentation [on]"
    )
    p.add_argument(
        "--aug-scale",
        dest="aug_scale",
        type=float,
        help="augmentation: largest scale (or its inverse) per axis; 1.15 frames like the detector [{}]".format(
            d.aug_scale
        ),
    )
    p.add_argument(
        "--aug-shift",
        dest="aug_shift",
        type=float,
        help="augmentation: largest shift, a share of the side; 0.10 frames like the detector [{}]".format(d.aug_shift),
    )
    p.add_argument("--seed", type=int, help="[{}]".format(d.seed))
    p.add_argument("--limit-train", dest="limit_train", type=int, help="first N training faces; 0: all [0]")
    p.add_argument("--limit-valid", dest="limit_valid", type=int, help="first N Valid faces; 0: all [0]")
    p.add_argument(
        "--init-from",
        dest="init_from",
        help="start from these weights (SavedModel from `fer-edge export` or .keras) [none]",
    )
    p.add_argument(
        "--logit-adjust",
        dest="logit_adjust",
        type=float,
        help="tau of the logit-adjusted loss against class imbalance; 0: off [{}]".format(d.logit_adjust),
    )
    p.add_argument(
        "--select",
        choices=SELECTIONS,
        help="checkpoint choice on Valid: accuracy; balanced (mean of accuracy and macro recall); rule (the most "
        "accurate epoch with macro recall >= {} and every class >= {}, else the best balanced one) [{}]".format(
            RULE_MACRO_RECALL, RULE_MIN_RECALL, d.select
        ),
    )
    p.add_argument("--teacher", help="teacher file from `fer-edge teacher` (its faces must be this run's) [none]")
    p.add_argument(
        "--distill",
        type=float,
        help="weight alpha of the teacher in the target: alpha * teacher + (1 - alpha) * the mode's [{}]".format(
            d.distill
        ),
    )
    p.add_argument("--verbose", type=int, help="1: progress bar, 2: one line per epoch [{}]".format(d.verbose))
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last.keras")
    p.set_defaults(func=handlers["train"])

    p = sub.add_parser(
        "teacher",
        help="soft targets for distillation: shipped models' calibrated probabilities on the Train faces",
        description="Write a teacher file (.npz) for `fer-edge train --teacher`: the calibrated probabilities "
        "of the given models (several: their normalised geometric mean) on every FER2013Train face the trainer "
        "uses in --mode, with the mode, face count and a SHA-256 of the faces so the trainer can check them.",
    )
    p.add_argument("--data", required=True, help="FERPlus folder, .tar.gz or .npz cache")
    p.add_argument(
        "--models", default="accurate,balanced", help="comma-separated shipped model names or ONNX paths [%(default)s]"
    )
    p.add_argument("--out", required=True, help="teacher file (.npz) to write")
    p.add_argument("--mode", choices=list(MODES), default="crossentropy", help="the trainer's label mode [%(default)s]")
    p.add_argument("--limit", type=int, default=0, help="first N faces, as the trainer's --limit-train; 0: all [0]")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="[%(default)s]")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads [%(default)s]")
    p.set_defaults(func=handlers["teacher"])

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix on a split")
    p.add_argument("--model", required=True, help=".keras, run directory or SavedModel directory")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="FER2013Valid")
    p.add_argument("--out", help="folder for confusion_matrix.png and report.json")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=handlers["evaluate"])

    p = sub.add_parser("export", help="SavedModel + metadata from a trained model")
    p.add_argument("--model", required=True, help=".keras file or run directory (uses best.keras)")
    p.add_argument("--out", required=True, help="SavedModel directory to create")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--flip-average",
        dest="flip_average",
        action="store_true",
        help="average each face with its mirror image inside the model (2x MACs)",
    )
    p.add_argument("--data", help="FER+ data: measure the exported model's Valid accuracy into its metadata")
    p.add_argument(
        "--name",
        help="the model's name in its metadata and in every event's model.id (default: the "
        "network's, e.g. vgg13_bn_w0.5_flipavg)",
    )
    p.set_defaults(func=handlers["export"])

    from convert.formats import NAMES

    p = sub.add_parser("convert", help="convert an exported SavedModel to an edge format, checked on real faces")
    p.add_argument("format", choices=NAMES, help="artifact format (docs/convert.md)")
    p.add_argument("--model", required=True, help="SavedModel directory from `fer-edge export`")
    p.add_argument("--out", required=True, help="output directory to create")
    p.add_argument(
        "--data",
        help="FER+ data whose FER2013Valid faces check the conversion (default: "
        "$FER_EDGE_DATA/ferplus-trainval.tar.gz, then data/ferplus.npz)",
    )
    p.add_argument("--faces", help=".npy of uint8 faces [N,48,48] to check the conversion on instead")
    p.add_argument(
        "--check-faces",
        dest="check_faces",
        type=int,
        default=512,
        help="how many faces the parity check uses (0: all; default %(default)s)",
    )
    p.add_argument("--opset", type=int, help="ONNX opset (default 13, the highest TensorRT 8.2 parses)")
    p.add_argument("--precision", choices=("fp16", "fp32", "int8"), help="TensorRT precision (default fp16)")
    p.add_argument("--max-batch", dest="max_batch", type=int, help="TensorRT max batch (default 8)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=handlers["convert"])

    from .run import add_agent_options

    p = sub.add_parser("run", help="the edge agent on this host: camera/video -> emotions -> MQTT events")
    add_agent_options(p)
    p.set_defaults(func=handlers["run"])

    from .outbox_cmd import add_parser as add_outbox_parser

    add_outbox_parser(sub)

    p = sub.add_parser("image", help="print the faces and emotions of image files (JSON lines)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    add_pipeline_options(p)
    p.set_defaults(func=handlers["image"])

    from .serve.command import add_parser as add_serve_parser

    add_serve_parser(sub).set_defaults(func=handlers["serve"])

    from .web.command import add_parser as add_web_parser

    add_pipeline_options(add_web_parser(sub)).set_defaults(func=handlers["web"])

    p = sub.add_parser(
        "subscribe", help="print what devices publish: emotion events, face tracks, device state, status, stats"
    )
    p.add_argument("--broker", required=True, help="mqtt://[user@]host[:port] or mqtts://host[:port]")
    p.add_argument("--device-id", dest="device_id", default="+", help="one device, or + for all (default)")
    p.add_argument("--topic-prefix", dest="topic_prefix", default="fer-edge")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--json", action="store_true", help="raw JSON payloads, one per line")
    view.add_argument(
        "--table", action="store_true", help="a live table per device (redrawn on a terminal, snapshots when piped)"
    )
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between table redraws (default %(default)s)")
    p.add_argument(
        "--kinds",
        help="topic kinds to subscribe to, comma-separated (default: all of events,status,stats,tracks,state)",
    )
    p.add_argument(
        "--since",
        action="store_true",
        help="resume the persistent session of --client-id: what was published while it was away "
        "comes first (docs/mqtt.md)",
    )
    p.add_argument("--client-id", dest="client_id", help="MQTT client id (required by --since)")
    p.add_argument("--count", type=int, help="exit after this many messages")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    add_broker_access(p)
    p.set_defaults(func=handlers["subscribe"])

    p = sub.add_parser(
        "homeassistant",
        help="Home Assistant discovery: remove a device's entities (empty retained configs; nothing else left)",
    )
    p.add_argument("action", choices=["remove"])
    p.add_argument("--broker", required=True, help="mqtt://[user@]host[:port] or mqtts://host[:port]")
    p.add_argument("--device-id", dest="device_id", required=True, help="the agent's device id")
    p.add_argument(
        "--homeassistant-prefix",
        dest="homeassistant_prefix",
        default="homeassistant",
        help="Home Assistant's discovery prefix (default %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker (default %(default)s)")
    add_broker_access(p)
    p.set_defaults(func=handlers["homeassistant"])

    p = sub.add_parser(
        "bench",
        help="speed, memory and accuracy, side by side with the fer package",
        description="`fer-edge bench`: classifier runtimes and the agent on videos; `fer-edge bench "
        "detect`: face detectors on scenes with ground truth (FER+ Valid faces).",
    )
    p.add_argument(
        "section",
        nargs="?",
        choices=["agent", "detect", "models", "serve"],
        default="agent",
        help="agent (default): classifier + agent on videos; detect: face detectors; models: the "
        "shipped classifiers side by side (--models); serve: `fer-edge serve` at 1, 8 and 32 clients",
    )
    p.add_argument("--requests", type=int, default=240, help="serve: requests per client count (default %(default)s)")
    p.add_argument(
        "--browser-frames",
        dest="browser_frames",
        type=int,
        default=20,
        help="serve: frames the in-browser pipeline runs in headless Chromium (0: none; default %(default)s)",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="serve: instead, `fer-edge serve` vs Ray Serve with 1 and 2 replicas at 8 clients (needs ray[serve])",
    )
    p.add_argument("--ray-python", dest="ray_python", help="serve --ray: a Python with ray[serve] (default: .venv-ray)")
    p.add_argument(
        "--models",
        help="models: comma-separated model names or ONNX paths (default: every shipped model)",
    )
    p.add_argument("--rounds", type=int, default=7, help="models: interleaved timing rounds (default %(default)s)")
    p.add_argument("--model", help="ONNX artifact (default: the shipped model)")
    p.add_argument("--data", help="FERPlus data for accuracy on FER2013Valid (.tar.gz, folder or .npz)")
    p.add_argument("--peer", choices=["fer"], help="also measure the fer package (installed into .venv-peer)")
    p.add_argument("--frames", type=int, default=90, help="frames per benchmark video (default: %(default)s)")
    p.add_argument("--json", help="write the full report as JSON")
    p.add_argument("--markdown", help="write the results table as Markdown")
    p.add_argument("--scenes", type=int, help="detect: near scenes (far: half, tilted: two thirds; default 60)")
    p.add_argument("--repeats", type=int, default=5, help="detect: interleaved timing repetitions (default 5)")
    p.add_argument("--min-face", dest="min_face", type=int, default=24, help="detect: smallest face (default 24)")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="detect: measure each detector's box -> FER crop mapping (Valid faces) and keypoint template "
        "(Train faces) into models/crop_mapping.json",
    )
    p.set_defaults(func=handlers["bench"])

    p = sub.add_parser(
        "bundle",
        help="device bundles: jetson (tarball + install.sh), deeplens (Lambda zip + model), "
        "greengrass (Greengrass V2 component: recipe + archives)",
    )
    p.add_argument("target", choices=["jetson", "deeplens", "greengrass"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--model",
        help="a shipped model's name (default = balanced, accurate, fast, fast-accurate, deep-emotion) for every target, or: jetson: the ONNX; "
        "deeplens: the model .tar.gz; greengrass: the emotion model, ONNX (or OpenVINO "
        ".xml for --platform deeplens) [default]",
    )
    p.add_argument(
        "--version",
        help="jetson: bundle version (default: from the package and commit); greengrass: "
        "component version X.Y.Z (default: the package's)",
    )
    p.add_argument("--savedmodel", help="deeplens: convert this SavedModel (default: the shipped one)")
    p.add_argument("--data", help="deeplens: FER+ data whose Valid faces check the conversion")
    from fer_edge.bundles.greengrass import add_arguments as add_greengrass_bundle_arguments

    add_greengrass_bundle_arguments(p)
    p.set_defaults(func=handlers["bundle"])

    p = sub.add_parser(
        "deploy",
        help="deeplens: upload the model and create/update + publish the Lambda; greengrass: "
        "upload the archives, create the component version, deploy it (awscli)",
    )
    p.add_argument("target", choices=["deeplens", "greengrass"])
    p.add_argument("--bucket", required=True, help="S3 bucket; DeepLens needs its name to start with deeplens-")
    p.add_argument("--function", help="deeplens: Lambda function name (starting with deeplens)")
    p.add_argument("--role", help="IAM role ARN for the function (default: AWSDeepLensLambdaRole)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--zip", help="deeplens: the Lambda zip from `fer-edge bundle deeplens`")
    p.add_argument("--model", help="deeplens: the model .tar.gz from `fer-edge bundle deeplens`")
    p.add_argument("--runtime", default="python3.7")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="Lambda environment (FER_EDGE_* settings)")
    p.add_argument("--endpoint-url", dest="endpoint_url", help="a local AWS endpoint (tests)")
    p.add_argument(
        "--allow-any-name",
        dest="allow_any_name",
        action="store_true",
        help="do not require the deeplens- bucket and function name prefixes",
    )
    from fer_edge.bundles.greengrass_deploy import add_arguments as add_greengrass_deploy_arguments

    add_greengrass_deploy_arguments(p)
    p.set_defaults(func=handlers["deploy"])
    return parser
