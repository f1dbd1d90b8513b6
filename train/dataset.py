"""FER+ readers and the compact cached dataset.

Two sources users have:

* the FERPlus folder layout written by Microsoft's ``generate_training_data.py``
  (``FER2013Train/label.csv`` + 48x48 PNGs, likewise Valid/Test), as a folder or a .tar.gz of it;
* Kaggle's ``fer2013.csv`` (emotion, pixels, Usage) paired row by row with ``fer2013new.csv``
  (Usage, Image name, 10 vote columns).

Both give a :class:`FerPlusData` (uint8 faces [N, 48, 48], int votes [N, 10], split and image
name per face) written once to a ``.npz`` cache so training never decodes PNGs again. Bad input
raises :class:`DatasetError` naming the file, row and field; nothing is written then.
"""

import csv
import io
import os
import re
import tarfile
import tempfile
from typing import Iterable

import cv2
import numpy as np
import numpy.typing as npt

from edge.labels import NUM_VOTES, VOTE_COLUMNS

from .labels import EVAL_MODE, labels_for

FACE_SIZE = 48
SPLITS = ("FER2013Train", "FER2013Valid", "FER2013Test")
KAGGLE_USAGE = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
CACHE_VERSION = 1
_RECT = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")


class DatasetError(ValueError):
    """Bad dataset input; the message names the file, the row (1-based) and the field."""

    def __init__(self, path: str | os.PathLike[str], message: str, row: int | None = None, field: str | None = None):
        where = str(path)
        if row is not None:
            where += ", row {}".format(row)
        if field is not None:
            where += ", field '{}'".format(field)
        super().__init__("{}: {}".format(where, message))
        self.path, self.row, self.field = path, row, field


class FerPlusData:
    """Faces, votes, split and image name per sample (all splits in one set of arrays)."""

    def __init__(
        self,
        images: npt.ArrayLike,
        votes: npt.ArrayLike,
        splits: npt.ArrayLike,
        names: npt.ArrayLike,
        notes: Iterable[str] = (),
    ):
        self.notes = list(notes)  # things the reader noticed and handled (printed by the CLI)
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.votes = np.asarray(votes, dtype=np.int16)
        self.splits = np.asarray(splits, dtype="U16")
        self.names = np.asarray(names, dtype="U32")
        n = len(self.images)
        if not (len(self.votes) == len(self.splits) == len(self.names) == n):
            raise ValueError("inconsistent dataset arrays")

    def __len__(self):
        return len(self.images)

    def split(self, name: str) -> "FerPlusData":
        """The subset belonging to one split (e.g. 'FER2013Valid')."""
        idx = np.flatnonzero(self.splits == name)
        return FerPlusData(self.images[idx], self.votes[idx], self.splits[idx], self.names[idx])

    def available_splits(self) -> list[str]:
        return [s for s in SPLITS if np.any(self.splits == s)]

    def labelled(self, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(faces [K, 48, 48], distributions [K, 8], kept indices) under a FER+ label mode."""
        keep, dists = labels_for(self.votes, mode)
        return self.images[keep], dists, keep


# ---------------------------------------------------------------- votes and rows


def _parse_votes(cells, path, row, first_col):
    if len(cells) != NUM_VOTES:
        raise DatasetError(
            path,
            "expected {} vote columns ({}), found {}".format(NUM_VOTES, ", ".join(VOTE_COLUMNS), len(cells)),
            row=row,
            field="votes",
        )
    votes = []
    for j, cell in enumerate(cells):
        try:
            v = int(cell.strip())
        except ValueError:
            raise DatasetError(
                path, "vote {!r} is not an integer".format(cell), row=row, field=VOTE_COLUMNS[j]
            ) from None
        if v < 0:
            raise DatasetError(path, "negative vote {}".format(v), row=row, field=VOTE_COLUMNS[j])
        votes.append(v)
    return votes


def _decode_png(data, path):
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if arr is None:
        raise DatasetError(path, "unreadable image (not a decodable PNG)")
    return arr


def _crop_face(img, rect, path, row):
    x, y, w, h = rect
    if w <= 0 or h <= 0 or x + w > img.shape[1] or y + h > img.shape[0]:
        raise DatasetError(
            path,
            "face rectangle {} outside the {}x{} image".format(rect, img.shape[1], img.shape[0]),
            row=row,
            field="face rectangle",
        )
    face = img[y : y + h, x : x + w]
    if face.shape != (FACE_SIZE, FACE_SIZE):
        face = cv2.resize(face, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    return face


def _read_label_csv(text, path):
    """FERPlus label.csv -> list of (row, image name, rect, votes)."""
    out = []
    for i, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != 2 + NUM_VOTES:
            raise DatasetError(
                path,
                "expected {} columns (image name, face rectangle, {} votes), found {}".format(
                    2 + NUM_VOTES, NUM_VOTES, len(cells)
                ),
                row=i,
            )
        name = cells[0].strip()
        if not name:
            raise DatasetError(path, "empty image name", row=i, field="image name")
        m = _RECT.match(cells[1].strip())
        if not m:
            raise DatasetError(
                path, "face rectangle {!r} is not '(x, y, w, h)'".format(cells[1]), row=i, field="face rectangle"
            )
        out.append((i, name, tuple(int(g) for g in m.groups()), _parse_votes(cells[2:], path, i, 2)))
    return out


# ---------------------------------------------------------------- FERPlus folder / tarball


def _assemble(split_rows, image_bytes):
    """split_rows: {split: (label path, rows)}; image_bytes(split, name) -> (bytes|None, path)."""
    images, votes, splits, names = [], [], [], []
    for split in SPLITS:
        if split not in split_rows:
            continue
        label_path, rows = split_rows[split]
        for row, name, rect, v in rows:
            data, img_path = image_bytes(split, name)
            if data is None:
                raise DatasetError(label_path, "image {} is missing".format(img_path), row=row, field="image name")
            img = _decode_png(data, img_path)
            images.append(_crop_face(img, rect, label_path, row))
            votes.append(v)
            splits.append(split)
            names.append(name)
    if not images:
        raise DatasetError("FERPlus data", "no FER2013Train/FER2013Valid/FER2013Test label.csv found")
    return FerPlusData(np.stack(images), votes, splits, names)


def read_ferplus_folder(root: str | os.PathLike[str]) -> FerPlusData:
    """Read the FERPlus layout from a folder holding FER2013Train/, FER2013Valid/, ..."""
    root = str(root)
    split_rows = {}
    for split in SPLITS:
        label = os.path.join(root, split, "label.csv")
        if os.path.isfile(label):
            with open(label, "r", encoding="utf-8", newline="") as f:
                split_rows[split] = (label, _read_label_csv(f.read(), label))
    if not split_rows:
        raise DatasetError(root, "no {}/label.csv found".format("|".join(SPLITS)))

    def image_bytes(split, name):
        path = os.path.join(root, split, name)
        if not os.path.isfile(path):
            return None, path
        with open(path, "rb") as f:
            return f.read(), path

    return _assemble(split_rows, image_bytes)


def read_ferplus_tar(path: str | os.PathLike[str]) -> FerPlusData:
    """Read the FERPlus layout straight from a .tar(.gz) (one streaming pass)."""
    path = str(path)
    files = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = member.name.replace("\\", "/").strip("/").split("/")
                # Accept an optional leading folder: [prefix/]FER2013Train/name
                for k in range(len(parts) - 1):
                    if parts[k] in SPLITS and k == len(parts) - 2:
                        handle = tar.extractfile(member)
                        files[(parts[k], parts[k + 1])] = handle.read() if handle else b""
                        break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(path, "cannot read the archive ({})".format(exc)) from None
    split_rows = {}
    for split in SPLITS:
        data = files.get((split, "label.csv"))
        if data is not None:
            label = "{}:{}/label.csv".format(path, split)
            split_rows[split] = (label, _read_label_csv(data.decode("utf-8"), label))
    if not split_rows:
        raise DatasetError(path, "archive holds no {}/label.csv".format("|".join(SPLITS)))
    return _assemble(split_rows, lambda split, name: (files.get((split, name)), "{}:{}/{}".format(path, split, name)))


# ---------------------------------------------------------------- Kaggle fer2013.csv + fer2013new.csv


def _csv_rows(path):
    if not os.path.isfile(path):
        raise DatasetError(path, "file not found")
    with open(path, "r", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetError(path, "empty file")
    return rows[0], rows[1:]


def _column(header, name, path):
    names = [h.strip() for h in header]
    if name not in names:
        raise DatasetError(path, "header has no '{}' column (found: {})".format(name, ", ".join(names)), row=1)
    return names.index(name)


def read_kaggle(fer2013_csv: str | os.PathLike[str], fer2013new_csv: str | os.PathLike[str]) -> FerPlusData:
    """Kaggle fer2013.csv paired row by row with FER+ fer2013new.csv.

    Rows whose FER+ image name is empty were judged not to be faces and are skipped, as
    Microsoft's generate_training_data.py does. An image name used twice keeps its last row,
    as that tool's PNG writes would. Rows are numbered as in the files (header = 1).
    """
    fer_path, new_path = str(fer2013_csv), str(fer2013new_csv)
    fer_header, fer_rows = _csv_rows(fer_path)
    new_header, new_rows = _csv_rows(new_path)
    if len(fer_rows) != len(new_rows):
        raise DatasetError(
            new_path,
            "has {} data rows but {} has {}; the two files pair row by row".format(
                len(new_rows), fer_path, len(fer_rows)
            ),
        )
    c_pix = _column(fer_header, "pixels", fer_path)
    c_use = _column(fer_header, "Usage", fer_path)
    n_use = _column(new_header, "Usage", new_path)
    n_name = _column(new_header, "Image name", new_path)
    n_votes = _column(new_header, VOTE_COLUMNS[0], new_path)
    images: list[np.ndarray] = []
    votes: list[list[int]] = []
    splits: list[str] = []
    names: list[str] = []
    notes: list[str] = []
    seen: dict[str, tuple[int, int]] = {}  # image name -> (index kept, row)
    for i, (frow, nrow) in enumerate(zip(fer_rows, new_rows), start=2):
        if len(nrow) != n_votes + NUM_VOTES:
            raise DatasetError(new_path, "expected {} columns, found {}".format(n_votes + NUM_VOTES, len(nrow)), row=i)
        name = nrow[n_name].strip()
        if not name:
            continue
        if len(frow) != len(fer_header):
            raise DatasetError(fer_path, "expected {} columns, found {}".format(len(fer_header), len(frow)), row=i)
        usage = frow[c_use].strip()
        if usage != nrow[n_use].strip():
            raise DatasetError(
                new_path,
                "Usage {!r} differs from {!r} in {}".format(nrow[n_use], usage, fer_path),
                row=i,
                field="Usage",
            )
        if usage not in KAGGLE_USAGE:
            raise DatasetError(
                fer_path,
                "unknown Usage {!r} (expected {})".format(usage, ", ".join(KAGGLE_USAGE)),
                row=i,
                field="Usage",
            )
        pix = frow[c_pix].split()
        if len(pix) != FACE_SIZE * FACE_SIZE:
            raise DatasetError(
                fer_path,
                "expected {} pixel values, found {}".format(FACE_SIZE * FACE_SIZE, len(pix)),
                row=i,
                field="pixels",
            )
        try:
            values = np.asarray([int(p) for p in pix], dtype=np.int32)
        except ValueError:
            raise DatasetError(fer_path, "pixel values must be integers", row=i, field="pixels") from None
        if values.min() < 0 or values.max() > 255:
            raise DatasetError(fer_path, "pixel values must be within 0..255", row=i, field="pixels")
        face = values.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)
        row_votes = _parse_votes(nrow[n_votes:], new_path, i, n_votes)
        if name in seen:
            j, first_row = seen[name]
            notes.append("{}: image name {} on rows {} and {}; kept row {}".format(new_path, name, first_row, i, i))
            images[j], votes[j], splits[j] = face, row_votes, KAGGLE_USAGE[usage]
            seen[name] = (j, i)
            continue
        seen[name] = (len(images), i)
        images.append(face)
        votes.append(row_votes)
        splits.append(KAGGLE_USAGE[usage])
        names.append(name)
    if not images:
        raise DatasetError(new_path, "no rows with an image name")
    return FerPlusData(np.stack(images), votes, splits, names, notes)


# ---------------------------------------------------------------- the cache


def read_source(
    src: str | os.PathLike[str] | None = None,
    kaggle: str | os.PathLike[str] | None = None,
    ferplus_votes: str | os.PathLike[str] | None = None,
) -> FerPlusData:
    """Any supported source: a FERPlus folder, a .tar/.tar.gz of it, or the Kaggle pair."""
    if kaggle is not None:
        if ferplus_votes is None:
            raise DatasetError(kaggle, "the Kaggle route also needs fer2013new.csv (--ferplus-votes)")
        return read_kaggle(kaggle, ferplus_votes)
    if src is None:
        raise DatasetError("(no source)", "give a FERPlus folder or .tar.gz, or fer2013.csv + fer2013new.csv")
    src = str(src)
    if not os.path.exists(src):
        raise DatasetError(
            src, "not found (give a FERPlus folder, a .tar.gz of it, or a cache from `fer-edge data build`)"
        )
    if os.path.isdir(src):
        return read_ferplus_folder(src)
    if os.path.isfile(src) and (src.endswith((".tar", ".tar.gz", ".tgz"))):
        return read_ferplus_tar(src)
    if os.path.isfile(src) and src.endswith(".npz"):
        return load_cache(src)
    raise DatasetError(src, "not a FERPlus folder, .tar(.gz) or .npz cache")


def save_cache(data: FerPlusData, path: str | os.PathLike[str]) -> str:
    """Write the dataset as one compressed .npz, atomically (nothing left behind on error)."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=folder)
    os.close(fd)
    try:
        np.savez_compressed(
            tmp,
            version=np.int32(CACHE_VERSION),
            images=data.images,
            votes=data.votes,
            splits=data.splits,
            names=data.names,
        )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_cache(path: str | os.PathLike[str]) -> FerPlusData:
    path = str(path)
    if not os.path.isfile(path):
        raise DatasetError(path, "dataset cache not found (build it with `fer-edge data build`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            version = int(z["version"])
            if version != CACHE_VERSION:
                raise DatasetError(path, "cache version {} (expected {}); rebuild it".format(version, CACHE_VERSION))
            return FerPlusData(z["images"], z["votes"], z["splits"], z["names"])
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(path, "not a fer-edge dataset cache ({})".format(exc)) from None


def split_counts(data: FerPlusData, mode: str) -> dict[str, tuple[str, int, int, np.ndarray]]:
    """{split: (kept, per-class counts)}; Valid/Test always under the majority protocol."""
    from .labels import class_counts

    out = {}
    for split in data.available_splits():
        part = data.split(split)
        m = mode if split == "FER2013Train" else EVAL_MODE
        _, dists, keep = part.labelled(m)
        out[split] = (m, len(part), len(keep), class_counts(dists))
    return out
