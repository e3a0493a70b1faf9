"""The precision registry is the one source of truth: the CLI, the parity bounds and the README derive from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rbench.errors import BadInputError
from rbench.precisions import (
    EXPORTED,
    PORTABLE,
    PRECISIONS,
    get_precision,
    markdown_table,
    parse_precisions,
    precision_of_file,
)

ROOT = Path(__file__).resolve().parents[1]


def test_readme_bounds_table_is_the_registry():
    assert markdown_table() in (ROOT / "README.md").read_text()


def test_cli_choices_are_the_registry():
    from rbench.cli.build import PrecisionChoice as BuildChoice
    from rbench.cli.parity import PrecisionChoice

    assert [c.value for c in PrecisionChoice] == list(PRECISIONS)
    assert list(EXPORTED) == ["fp32", "fp16", "int8", "int8-u8s8", "int8-nncf"]
    # what TensorRT builds: the portable graphs and the debugger's typed mixed graphs
    assert [c.value for c in BuildChoice] == list(PORTABLE) == ["fp32", "fp16", "int8", "int8-mixed", "fp16-mixed"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", ["fp32", "fp16", "int8", "int8-u8s8", "int8-nncf"]),
        ("int8", ["fp32", "int8"]),
        ("INT8, fp16", ["fp32", "fp16", "int8"]),
        ("int8-nncf", ["fp32", "int8-nncf"]),
    ],
)
def test_precision_lists_put_fp32_first_in_registry_order(text, expected):
    assert parse_precisions(text) == expected


@pytest.mark.parametrize("text", ["fp8", "fp32,bf8", ",", ""])
def test_unknown_precisions_are_bad_input(text):
    with pytest.raises(
        BadInputError, match="unknown precision .*; choose from fp32, fp16, int8, int8-u8s8, int8-nncf, or all"
    ):
        parse_precisions(text)


def test_files_and_families():
    assert [precision_of_file(p.file) for p in PRECISIONS.values()] == [
        "fp32", "fp16", "int8", "int8-u8s8", "int8-nncf", "int8-mixed", "fp16-mixed", "fp32",
    ]  # fmt: skip
    assert precision_of_file("weights.safetensors") is None
    int8 = get_precision("int8")
    assert int8.bounds("imagenet") == int8.bounds(None) == int8.tolerance
    assert int8.bounds("cifar").min_cosine == 0.9 and int8.bounds("plain").min_top1 == 0.85
    assert get_precision("fp16").bounds("cifar") == get_precision("fp16").tolerance  # no family override


def test_every_exported_precision_has_one_converter_and_its_options_make_it_again():
    from dataclasses import asdict

    from rbench.export.converters import CONVERTERS
    from rbench.export.precision import Int8Config
    from rbench.precisions import EXPORTED

    assert set(CONVERTERS) == set(EXPORTED) - {"fp32"}  # fp32 is the export itself
    assert all(c.precision == name and c.calibrates == ("int8" in name) for name, c in CONVERTERS.items())
    assert CONVERTERS["fp16"].cli_args({"keep_io_types": False}) == ["--io", "fp16"]
    recorded = asdict(Int8Config(method="minmax", calibration="digits", samples=32, seed=3))
    assert CONVERTERS["int8"].cli_args(recorded) == [
        "--calibration", "digits", "--calib-method", "minmax", "--calib-samples", "32", "--seed", "3",
    ]  # fmt: skip
