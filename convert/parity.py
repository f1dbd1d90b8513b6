"""Numerical checks of a converted artifact against its SavedModel, on real faces.

Both models see the same faces through the one preprocessing (``edge.preprocess.prepare_faces``):
NHWC for the SavedModel, the artifact's own layout for the artifact. The check reports the largest
absolute difference of the probabilities and how many faces get the same top emotion, and raises
:class:`ConversionError` with those numbers when they are outside tolerance.

Argmax rule: the top emotion must agree on every face, except on faces whose reference top-2
probabilities are closer than ``tie_margin`` (default ``2 * atol``): there a difference that is
itself within tolerance may legitimately swap them. Such near-ties are counted and reported.

Faces: given explicitly (uint8 [N, H, W] crops), else the FER2013Valid faces (majority protocol) of
a FER+ dataset (``data``), else of ``$FER_EDGE_DATA`` (default ``../shared/data`` beside the
repository) or the repository's ``data/ferplus.npz`` cache. Never random noise: without real
faces the check stops with an error asking for ``--data`` or ``--faces``.
"""

import collections
import os
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from edge import metadata as md

from .common import SavedModelSource
from .errors import ConversionError, ParityError

DATA_ENV = "FER_EDGE_DATA"
TARBALL = "ferplus-trainval.tar.gz"
VALID = "FER2013Valid"
DEFAULT_LIMIT = 512
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_VALID_CACHE: dict[str, np.ndarray] = {}  # dataset path -> its majority-labelled FER2013Valid faces


class ParityReport(
    collections.namedtuple("ParityReport", "what faces max_abs_diff mean_abs_diff argmax_agree near_ties atol")
):
    """Outcome of one parity check (all numbers, for logs and the CLI)."""

    def __str__(self):
        ties = " ({} near-ties)".format(self.near_ties) if self.near_ties else ""
        return (
            "{} vs SavedModel on {} faces: max |diff| {:.2e} (mean {:.1e}, allowed {:.0e}), same argmax "
            "on {}/{}{}".format(
                self.what,
                self.faces,
                self.max_abs_diff,
                self.mean_abs_diff,
                self.atol,
                self.argmax_agree,
                self.faces,
                ties,
            )
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(self._asdict())


def default_data_path() -> str | None:
    """The FER+ data used when none is given: $FER_EDGE_DATA's tarball, else data/ferplus.npz."""
    env = os.environ.get(DATA_ENV) or os.path.join(os.path.dirname(REPO), "shared", "data")
    candidates = [env] if os.path.isfile(env) else [os.path.join(env, TARBALL)]
    candidates.append(os.path.join(REPO, "data", "ferplus.npz"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def load_faces_file(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 faces [N, H, W] from a .npy file or the ``faces`` array of a .npz file."""
    path = str(path)
    if not os.path.isfile(path):
        raise ConversionError("{}: faces file not found".format(path))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ConversionError("{}: not a .npy or .npz file ({})".format(path, exc)) from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if "faces" not in loaded.files:
            raise ConversionError("{}: the .npz holds no 'faces' array (has: {})".format(path, ", ".join(loaded.files)))
        return np.array(loaded["faces"])


def valid_faces(data: str | os.PathLike[str], limit: int = DEFAULT_LIMIT) -> np.ndarray:
    """The first ``limit`` (0: all) majority-labelled FER2013Valid faces of a FER+ dataset."""
    key = os.path.abspath(str(data))
    if key not in _VALID_CACHE:
        from train.dataset import read_source
        from train.labels import EVAL_MODE

        dataset = read_source(key)
        if VALID not in dataset.available_splits():
            raise ConversionError("{}: no {} split to check the conversion on".format(data, VALID))
        _VALID_CACHE[key] = dataset.split(VALID).labelled(EVAL_MODE)[0]
    faces = _VALID_CACHE[key]
    return faces[:limit] if limit else faces


def parity_faces(
    faces: npt.ArrayLike | None = None, data: str | os.PathLike[str] | None = None, limit: int = DEFAULT_LIMIT
) -> tuple[np.ndarray, str]:
    """(uint8 faces, description) for a parity check; ConversionError when there are none."""
    if faces is not None:
        if isinstance(faces, str):
            faces = load_faces_file(faces)
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim not in (3, 4) or len(faces) == 0:
            raise ConversionError(
                "parity faces must be a non-empty uint8 array [N, H, W] (or [N, H, W, C]), got {} {}".format(
                    faces.dtype, faces.shape
                )
            )
        faces = faces[:limit] if limit else faces
        return faces, "{} given faces".format(len(faces))
    if data is None:
        data = default_data_path()
        if data is None:
            env = os.environ.get(DATA_ENV) or os.path.join(os.path.dirname(REPO), "shared", "data")
            raise ConversionError(
                "no real faces for the parity check: give --data (a FER+ .tar.gz, .npz cache or folder with "
                "{}) or --faces (a .npy of uint8 faces [N,48,48]), or set {} (looked for {} and {})".format(
                    VALID, DATA_ENV, os.path.join(env, TARBALL), os.path.join(REPO, "data", "ferplus.npz")
                )
            )
    faces = valid_faces(data, limit)
    return faces, "{} {} faces from {}".format(len(faces), VALID, data)


def compare(
    what: str, reference: npt.ArrayLike, got: npt.ArrayLike, atol: float, tie_margin: float | None = None
) -> ParityReport:
    """ParityReport of ``got`` against ``reference`` probabilities; ConversionError when outside tolerance."""
    reference = np.asarray(reference, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if reference.shape != got.shape:
        raise ConversionError(
            "{}: output shape {} differs from the SavedModel's {}".format(what, got.shape, reference.shape)
        )
    if not np.all(np.isfinite(got)):
        raise ConversionError("{}: output holds NaN or infinite values".format(what))
    tie_margin = 2.0 * atol if tie_margin is None else tie_margin
    diff = np.abs(reference - got)
    ref_top, got_top = reference.argmax(axis=1), got.argmax(axis=1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    differ = ref_top != got_top
    near = differ & (gap <= tie_margin)
    hard = differ & ~near
    report = ParityReport(
        what,
        int(len(reference)),
        float(diff.max()) if diff.size else 0.0,
        float(diff.mean()) if diff.size else 0.0,
        int((~differ).sum()),
        int(near.sum()),
        float(atol),
    )
    problems = []
    if report.max_abs_diff > atol:
        worst = int(np.unravel_index(np.argmax(diff), diff.shape)[0])
        problems.append(
            "max |diff| of probabilities {:.2e} > {:.0e} (face {})".format(report.max_abs_diff, atol, worst)
        )
    if hard.any():
        idx = np.flatnonzero(hard)
        problems.append(
            "top emotion differs on {} of {} faces (e.g. faces {})".format(
                len(idx), len(reference), ", ".join(str(i) for i in idx[:10])
            )
        )
    if problems:
        raise ParityError("{} does not match the SavedModel: {}. [{}]".format(what, "; ".join(problems), report))
    return report


def check(
    what: str,
    source: SavedModelSource,
    predict: Callable[[np.ndarray], npt.ArrayLike],
    faces: np.ndarray,
    layout: str,
    atol: float,
    tie_margin: float | None = None,
    log: Callable[[str], None] | None = None,
) -> ParityReport:
    """Run ``source`` (a SavedModelSource) and ``predict`` (artifact, ``layout`` input) on ``faces``."""
    from edge.preprocess import prepare_faces

    reference = source.predict(prepare_faces(faces, source.meta))
    got = predict(prepare_faces(faces, md.with_layout(source.meta, layout)))
    report = compare(what, reference, got, atol, tie_margin)
    if log is not None:
        log(str(report))
    return report
