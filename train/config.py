"""Training configuration: one JSON file in every run directory, CLI flags on top."""

import dataclasses
import json
import os

from .augment import MAX_SCALE, MAX_SHIFT
from .labels import MODES

# The architectures of train.models (named here so the CLI lists them without importing Keras).
ARCHITECTURES = (
    "vgg13",
    "vgg13-half",
    "vgg13-bn-half",
    "vgg13-bn-third",
    "resnet-s",
    "resnet",
    "mobilenet",
    "deep-emotion",
)


SELECTIONS = ("accuracy", "balanced", "rule")
# --select rule: the default model's rule (issue 22), macro recall and lowest class recall on Valid
RULE_MACRO_RECALL = 0.70
RULE_MIN_RECALL = 0.25


@dataclasses.dataclass
class TrainConfig:
    data: str = ""
    run_dir: str = "runs/latest"
    arch: str = "vgg13-bn-half"
    size: int = 0  # 0: the architecture's default input size
    mode: str = "crossentropy"
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    patience: int = 10  # early stopping on Valid accuracy; 0 disables it
    augment: bool = True
    aug_scale: float = MAX_SCALE  # augmentation: largest scale (or its inverse) per axis (default: the paper's)
    aug_shift: float = MAX_SHIFT  # augmentation: largest shift, a share of the side (default: the paper's)
    seed: int = 0
    limit_train: int = 0  # >0: only the first N training faces (smoke runs, tests)
    limit_valid: int = 0
    verbose: int = 1
    init_from: str = ""  # start from these weights: a SavedModel from `fer-edge export`, or a .keras file
    logit_adjust: float = 0.0  # tau of the logit-adjusted loss (0: plain); counters the class imbalance
    select: str = (
        "accuracy"  # checkpoint choice on Valid: accuracy, balanced (mean of accuracy and macro recall) or rule
    )
    teacher: str = ""  # teacher file from `fer-edge teacher` (soft targets for distillation)
    distill: float = 0.0  # alpha: target = alpha * teacher + (1 - alpha) * the mode's target

    def validate(self) -> "TrainConfig":
        if self.arch not in ARCHITECTURES:
            raise ValueError(
                "config 'arch': unknown architecture {!r} (choose from {})".format(self.arch, ", ".join(ARCHITECTURES))
            )
        if self.mode not in MODES:
            raise ValueError(
                "config 'mode': unknown label mode {!r} (choose from {})".format(self.mode, ", ".join(MODES))
            )
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError("config 'optimizer': {!r} is not adamw or sgd".format(self.optimizer))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError("config '{}': must be positive, got {}".format(name, getattr(self, name)))
        if self.select not in SELECTIONS:
            raise ValueError("config 'select': {!r} is not one of {}".format(self.select, ", ".join(SELECTIONS)))
        if not 0.0 <= self.logit_adjust <= 3.0:
            raise ValueError("config 'logit_adjust': {} is outside 0..3".format(self.logit_adjust))
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError("config 'distill': {} is outside 0..1".format(self.distill))
        if self.distill > 0 and not self.teacher:
            raise ValueError("config 'distill': {} needs a teacher file (config 'teacher')".format(self.distill))
        if self.distill > 0 and self.mode == "multi_target":
            raise ValueError("config 'distill': the multi_target mode's targets are not distributions to mix")
        if not 1.0 <= self.aug_scale <= 2.0:
            raise ValueError("config 'aug_scale': {} is outside 1..2".format(self.aug_scale))
        if not 0.0 <= self.aug_shift <= 0.5:
            raise ValueError("config 'aug_shift': {} is outside 0..0.5".format(self.aug_shift))
        if self.lr <= 0:
            raise ValueError("config 'lr': must be positive, got {}".format(self.lr))
        return self

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TrainConfig":
        with open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError("{}: unknown config keys {}".format(path, ", ".join(unknown)))
        return cls(**raw).validate()

    @classmethod
    def in_run(cls, run_dir: str | os.PathLike[str]) -> "TrainConfig":
        return cls.load(os.path.join(run_dir, "config.json"))
