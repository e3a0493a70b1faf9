"""Datasets for training: digits' stratified split, class folders, train/val folders and labels files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_image_tree

from rbench.data import Preprocess, digits_images
from rbench.data.datasets import load_dataset, read_labels_file
from rbench.errors import BadInputError

SMALL = Preprocess(size=16, resize=16)


def test_digits_split_is_stratified_seeded_and_shared_with_calibration():
    a = load_dataset("digits", SMALL, seed=0)
    b = load_dataset("digits", SMALL, seed=1)
    assert (len(a.train), len(a.val)) == (1437, 360)
    counts = np.bincount(a.val.y.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # every class, in proportion (about 36 each)
    assert a.train.names != b.train.names  # another seed, another split
    assert load_dataset("digits", SMALL, seed=0).train.names == a.train.names
    assert not set(a.train.names) & set(a.val.names)
    # INT8 calibration on 'digits' draws from the same training split
    calib = {int(n.split("-")[0]) for n in digits_images("train", seed=0)}
    assert calib == {int(n.split("/")[1]) for n in a.train.names}


def test_one_folder_is_split_by_class(tmp_path):
    write_image_tree(tmp_path / "data", {"cat": 10, "dog": 10, "emu": 5})
    data = load_dataset(str(tmp_path / "data"), SMALL, val_split=0.2, seed=3)
    assert data.class_names == ["cat", "dog", "emu"]
    assert len(data.train) + len(data.val) == 25
    assert set(data.val.y.tolist()) == {0, 1, 2}
    assert data.train.x.shape[1:] == (3, 16, 16)


MONKEY_LABELS = """Label,  Latin Name           , Common Name                   , Train Images , Validation Images
n0   , alouatta_palliata\t, mantled_howler                , 131          , 26
n1   , erythrocebus_patas\t, patas_monkey                  , 139          , 28
n2   , cacajao_calvus\t, bald_uakari                   , 137          , 27
"""


def test_train_and_val_folders_with_a_kaggle_labels_file(tmp_path):
    write_image_tree(tmp_path / "training", {"n0": 6, "n1": 6, "n2": 6})
    write_image_tree(tmp_path / "validation", {"n0": 2, "n2": 3}, seed=1)
    (tmp_path / "monkey_labels.txt").write_text(MONKEY_LABELS)
    data = load_dataset(
        str(tmp_path / "training"),
        SMALL,
        val_data=str(tmp_path / "validation"),
        labels=str(tmp_path / "monkey_labels.txt"),
    )
    assert data.class_names == ["mantled_howler", "patas_monkey", "bald_uakari"]
    assert (len(data.train), len(data.val)) == (18, 5)
    assert sorted(data.val.y.tolist()) == [0, 0, 2, 2, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n0 zero\nn1 one\n", {"n0": "zero", "n1": "one"}),
        ("folder\tname\nn0\tzero\nn1\tone\n", {"n0": "zero", "n1": "one"}),
        ("n0,zero\nn1,one\n", {"n0": "zero", "n1": "one"}),
    ],
)
def test_labels_file_formats(tmp_path, text, expected):
    (tmp_path / "labels.txt").write_text(text)
    assert read_labels_file(tmp_path / "labels.txt") == expected


def test_bad_datasets_are_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    write_image_tree(tmp_path / "one", {"only": 4})
    write_image_tree(tmp_path / "two", {"a": 4, "b": 4})
    write_image_tree(tmp_path / "val", {"a": 2, "z": 2})
    (tmp_path / "labels.txt").write_text("a alpha\nc gamma\n")
    cases = {
        "no images": dict(data=str(tmp_path / "empty")),
        "one class folder (only)": dict(data=str(tmp_path / "one")),
        "validation classes absent from training: z": dict(data=str(tmp_path / "two"), val_data=str(tmp_path / "val")),
        "no entry for folder(s) b; entries for no training folder: c": dict(
            data=str(tmp_path / "two"), labels=str(tmp_path / "labels.txt")
        ),
    }
    for message, kwargs in cases.items():
        with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_dataset(kwargs.pop("data"), SMALL, **kwargs)
    (tmp_path / "two" / "b" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(BadInputError, match=r"cannot read image .*two/b/1.png"):
        load_dataset(str(tmp_path / "two"), SMALL)
