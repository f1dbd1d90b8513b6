"""Dataset readers: both input routes give identical arrays; bad input names file and row."""

import csv
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fer_testdata import REPO, write_ferplus_folder
from train.dataset import (
    DatasetError,
    load_cache,
    read_ferplus_folder,
    read_ferplus_tar,
    read_kaggle,
    read_source,
    save_cache,
    split_counts,
)

KAGGLE_HEADER = ["emotion", "pixels", "Usage"]
NEW_HEADER = [
    "Usage",
    "Image name",
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
]
USAGE = {"FER2013Train": "Training", "FER2013Valid": "PublicTest"}


def write_kaggle_pair(folder, data, per_split, non_faces=3):
    """fer2013.csv + fer2013new.csv for the same faces, with a few not-a-face rows between."""
    fer = [KAGGLE_HEADER]
    new = [NEW_HEADER]
    rng = np.random.default_rng(1)
    for split, n in per_split.items():
        part = data.split(split)
        for k, (img, votes, name) in enumerate(zip(part.images[:n], part.votes[:n], part.names[:n])):
            if k % 7 == 3 and non_faces:  # a row FER+ judged not to be a face (empty image name)
                non_faces -= 1
                fer.append(["0", " ".join(map(str, rng.integers(0, 256, 48 * 48))), USAGE[split]])
                new.append([USAGE[split], ""] + ["0"] * 9 + ["10"])
            fer.append(["0", " ".join(str(int(p)) for p in img.ravel()), USAGE[split]])
            new.append([USAGE[split], name] + [str(int(v)) for v in votes])
    for name, rows in (("fer2013.csv", fer), ("fer2013new.csv", new)):
        with open(folder / name, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return folder / "fer2013.csv", folder / "fer2013new.csv"


def assert_same(a, b):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.votes, b.votes)
    assert a.splits.tolist() == b.splits.tolist()
    assert a.names.tolist() == b.names.tolist()


def test_folder_tarball_and_kaggle_routes_give_identical_arrays(ferplus, tmp_path):
    per_split = {"FER2013Train": 40, "FER2013Valid": 20}
    folder = write_ferplus_folder(tmp_path / "ferplus", ferplus, per_split)
    from_folder = read_ferplus_folder(folder)
    assert len(from_folder) == 60
    fer_csv, new_csv = write_kaggle_pair(tmp_path, ferplus, per_split)
    assert_same(from_folder, read_kaggle(fer_csv, new_csv))
    subprocess.run(["tar", "czf", str(tmp_path / "small.tar.gz"), "-C", str(folder), "."], check=True)
    assert_same(from_folder, read_ferplus_tar(tmp_path / "small.tar.gz"))
    # the faces are the real FER+ pixels
    np.testing.assert_array_equal(from_folder.images[:40], ferplus.split("FER2013Train").images[:40])


def test_missing_data_path_is_named(tmp_path):
    with pytest.raises(DatasetError, match="nope.npz: not found"):
        read_source(tmp_path / "nope.npz")


def test_cache_round_trip(small_ferplus_dir, tmp_path):
    data = read_source(small_ferplus_dir)
    path = save_cache(data, tmp_path / "c" / "ferplus.npz")
    assert_same(data, load_cache(path))
    assert_same(data, read_source(path))
    counts = split_counts(data, "crossentropy")
    assert counts["FER2013Valid"][0] == "majority"
    assert counts["FER2013Train"][0] == "crossentropy"


def test_shared_fer2013new_names_the_same_images_as_the_folder_layout(ferplus, ferplus_votes_csv):
    """fer2013new.csv and the FERPlus folders index the same FER2013 images per split.

    Their votes are two FER+ label releases and differ on a few percent of rows (docs/models/data.md),
    so only the pairing of image names and splits is asserted here, plus that most votes agree.
    """
    with open(ferplus_votes_csv, newline="") as f:
        rows = [r for r in list(csv.reader(f))[1:] if r[1]]
    for split, usage in USAGE.items():
        part = ferplus.split(split)
        csv_names = {r[1] for r in rows if r[0] == usage}
        assert set(part.names.tolist()) == csv_names
        by_name = {r[1]: [int(v) for v in r[2:]] for r in rows if r[0] == usage}
        same = np.mean([by_name[n] == v for n, v in zip(part.names.tolist(), part.votes.tolist())])
        assert same > 0.9


def test_kaggle_route_keeps_the_last_row_of_a_duplicated_image_name(ferplus, tmp_path):
    fer_csv, new_csv = write_kaggle_pair(tmp_path, ferplus, {"FER2013Train": 4}, non_faces=0)
    fer = list(csv.reader(open(fer_csv, newline="")))
    new = list(csv.reader(open(new_csv, newline="")))
    fer.append(fer[2])
    new.append(new[2][:2] + ["0", "10"] + ["0"] * 8)
    for path, rows in ((fer_csv, fer), (new_csv, new)):
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    data = read_kaggle(fer_csv, new_csv)
    assert len(data) == 4
    assert data.votes[1].tolist() == [0, 10] + [0] * 8
    assert "rows 3 and 6" in data.notes[0]


# ------------------------------------------------------------------ bad input


@pytest.fixture()
def tiny_folder(ferplus, tmp_path):
    return write_ferplus_folder(tmp_path / "ferplus", ferplus, {"FER2013Train": 5, "FER2013Valid": 3})


def _rewrite_row(label_csv, row, new_line):
    lines = label_csv.read_text().splitlines()
    lines[row - 1] = new_line
    label_csv.write_text("\n".join(lines) + "\n")


def test_row_with_wrong_vote_count_names_file_and_row(tiny_folder):
    label = tiny_folder / "FER2013Train" / "label.csv"
    name = label.read_text().splitlines()[2].split(",")[0]
    _rewrite_row(label, 3, '{},"(0, 0, 48, 48)",1,2,3,4,0,0,0,0,0'.format(name))
    with pytest.raises(DatasetError) as err:
        read_ferplus_folder(tiny_folder)
    assert str(label) in str(err.value) and "row 3" in str(err.value) and "expected 12 columns" in str(err.value)


def test_non_integer_vote_names_the_field(tiny_folder):
    label = tiny_folder / "FER2013Valid" / "label.csv"
    name = label.read_text().splitlines()[1].split(",")[0]
    _rewrite_row(label, 2, '{},"(0, 0, 48, 48)",1,2,x,4,0,0,0,0,0,0'.format(name))
    with pytest.raises(DatasetError, match=r"row 2, field 'surprise'"):
        read_ferplus_folder(tiny_folder)


def test_missing_png_names_the_image_and_row(tiny_folder):
    label = tiny_folder / "FER2013Train" / "label.csv"
    name = label.read_text().splitlines()[3].split(",")[0]
    (tiny_folder / "FER2013Train" / name).unlink()
    with pytest.raises(DatasetError) as err:
        read_ferplus_folder(tiny_folder)
    assert "row 4" in str(err.value) and name in str(err.value) and "missing" in str(err.value)


def test_unreadable_png_is_named(tiny_folder):
    label = tiny_folder / "FER2013Valid" / "label.csv"
    name = label.read_text().splitlines()[0].split(",")[0]
    (tiny_folder / "FER2013Valid" / name).write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="{}.*unreadable image".format(name)):
        read_ferplus_folder(tiny_folder)


def test_kaggle_wrong_pixel_count_and_row_mismatch(ferplus, tmp_path):
    fer_csv, new_csv = write_kaggle_pair(tmp_path, ferplus, {"FER2013Train": 6}, non_faces=0)
    rows = list(csv.reader(open(fer_csv, newline="")))
    rows[4][1] = " ".join(["7"] * 100)
    with open(fer_csv, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(DatasetError) as err:
        read_kaggle(fer_csv, new_csv)
    assert str(fer_csv) in str(err.value) and "row 5, field 'pixels'" in str(err.value)
    assert "expected 2304 pixel values, found 100" in str(err.value)
    with open(fer_csv, "w", newline="") as f:
        csv.writer(f).writerows(rows[:4])
    with pytest.raises(DatasetError, match="has 6 data rows but .* has 3"):
        read_kaggle(fer_csv, new_csv)


def test_cli_bad_input_exits_2_with_the_location_and_writes_nothing(tiny_folder, tmp_path):
    label = tiny_folder / "FER2013Train" / "label.csv"
    name = label.read_text().splitlines()[1].split(",")[0]
    _rewrite_row(label, 2, '{},"(0, 0, 48, 48)",1,2,3'.format(name))
    out = tmp_path / "out" / "cache.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge", "data", "build", "--src", str(tiny_folder), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "row 2" in proc.stderr and str(label) in proc.stderr
    assert not out.exists()


def test_cli_build_prints_per_class_counts(small_ferplus_dir, tmp_path):
    out = tmp_path / "cache.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge", "data", "build", "--src", str(small_ferplus_dir), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "FER2013Valid (majority mode)" in proc.stdout and "neutral" in proc.stdout
    assert len(load_cache(out)) == 900


def test_decoded_png_pixels_match_opencv(small_ferplus_dir):
    data = read_ferplus_folder(small_ferplus_dir)
    first = data.names[0]
    np.testing.assert_array_equal(
        data.images[0], cv2.imread(str(small_ferplus_dir / "FER2013Train" / first), cv2.IMREAD_GRAYSCALE)
    )
