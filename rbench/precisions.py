"""The one registry of precisions: the ONNX file each lives in and the parity bounds it is held to.

Everything else derives from it: the CLI's choices, the artifact's file names, the parity tolerances and the
README's table (a test keeps the README in step).
"""

from __future__ import annotations

from dataclasses import dataclass

from rbench.errors import BadInputError, unknown_choice

#: The two input sets of a parity check, in report order.
INPUT_SETS = ("random", "photos")


@dataclass(frozen=True)
class Tolerance:
    """Bounds an output must meet against the unfolded FP32 PyTorch reference.

    ``checked`` names the input sets the bounds apply to; NaN/Inf fail on every set. Reduced precisions are judged
    on real photos only: random tensors are far from any image (INT8 ranges calibrated on photos clip them, and
    FP16 rounding of a network's noise response says nothing about its images), so their figures are reported and
    marked "not judged".
    """

    max_abs_rel: float  # max |out - ref| <= max_abs_rel * max |ref|
    min_cosine: float  # worst per-sample cosine similarity
    min_top1: float  # fraction of samples with the same argmax
    checked: tuple[str, ...] = INPUT_SETS

    def describe(self) -> str:
        return (
            f"max abs <= {self.max_abs_rel:g} x max|ref|, cosine >= {self.min_cosine:g}, "
            f"top-1 >= {self.min_top1:.0%}, on {' and '.join(self.checked)}"
        )


@dataclass(frozen=True)
class Precision:
    name: str
    file: str  # the artifact's ONNX file of this precision
    tolerance: Tolerance
    description: str
    #: Bounds of a model family that differ from ``tolerance``, each set by measurement (README, "Parity").
    family_tolerance: tuple[tuple[str, Tolerance], ...] = ()
    #: Whether ``rbench export`` makes a file of its own; bf16 is an execution setting on the FP32 file.
    exported: bool = True
    #: The precision this is a backend-tuned variant of (its bounds and peak); None: a portable precision
    variant_of: str | None = None
    #: The arithmetic it runs in: the peak a row of it is held to
    peak: str = ""
    #: ``export`` (``rbench export`` makes it) or ``debug`` (``rbench debug precision --fix`` writes it)
    made_by: str = "export"

    def __post_init__(self) -> None:
        if not self.peak:
            object.__setattr__(self, "peak", self.variant_of or self.name)

    def bounds(self, family: str | None = None) -> Tolerance:
        return dict(self.family_tolerance).get(family or "", self.tolerance)

    @property
    def portable(self) -> bool:
        """An ONNX file every ONNX backend runs, TensorRT included (not a backend-tuned variant; a debugger's mixed
        graph is typed for TensorRT's strongly typed builder too)."""
        return self.exported and (self.variant_of is None or self.made_by == "debug")


_FP16 = Tolerance(1e-2, 0.9999, 1.0, checked=("photos",))
_INT8 = Tolerance(0.15, 0.99, 0.9, checked=("photos",))
# Measured, default export, worst over the photos (README, "INT8 bounds per model family"): CIFAR ResNets' 10 logits
# from 32x32 inputs lose more, with depth (resnet56 0.984, resnet110 0.914); random plain nets amplify rounding
# (plain20 0.858, plain18 top-1 7/8). The CIFAR max error is 0.35 since a CPU without VNNI (AMD Zen 3, AVX2):
# ONNX Runtime's int8 kernels there put resnet20 trained on a 3-class folder at 0.296 x max|ref| (cosine 0.9937),
# where Zen 4 stayed within 0.25.
_INT8_FAMILIES = (
    ("cifar", Tolerance(0.35, 0.9, 0.9, checked=("photos",))),
    ("plain", Tolerance(0.25, 0.85, 0.85, checked=("photos",))),
)
PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "model.onnx", Tolerance(1e-4, 0.99999, 1.0), "folded FP32 graph"),
        Precision(
            "fp16",
            "model.fp16.onnx",
            _FP16,
            "FP16 graph (onnxconverter-common), FP32 inputs and outputs",
        ),
        Precision(
            "int8",
            "model.int8.onnx",
            _INT8,
            "portable QDQ graph (TensorRT-ready): symmetric per-channel weights and symmetric activations",
            family_tolerance=_INT8_FAMILIES,
        ),
        Precision(
            "int8-u8s8",
            "model.int8-u8s8.onnx",
            _INT8,
            "QDQ graph for ONNX Runtime's CPU provider: uint8 asymmetric activations, int8 per-channel weights",
            family_tolerance=_INT8_FAMILIES,
            variant_of="int8",
        ),
        Precision(
            "int8-nncf",
            "model.int8-nncf.xml",
            _INT8,
            "OpenVINO IR quantized by NNCF from the FP32 graph (performance preset), same calibration images",
            family_tolerance=_INT8_FAMILIES,
            variant_of="int8",
        ),
        Precision(
            "int8-mixed",
            "model.int8-mixed.onnx",
            _INT8,
            "INT8 QDQ graph with the layers rbench debug precision --fix chose kept in FP32 (no Q/DQ on them)",
            family_tolerance=_INT8_FAMILIES,
            variant_of="int8",
            made_by="debug",
        ),
        Precision(
            "fp16-mixed",
            "model.fp16-mixed.onnx",
            _FP16,
            "FP16 graph with the layers rbench debug precision --fix chose computed and stored in FP32",
            variant_of="fp16",
            made_by="debug",
        ),
        Precision(
            "bf16",
            "model.onnx",
            # 8 bits of mantissa: between FP16 and INT8. Measured on the default ResNet-50's photos against PyTorch
            # FP32 (make bench): OpenVINO bf16 worst cosine 0.99964 (max error 1.1e-2 x max|logit|), torch autocast
            # 0.99963 (9.8e-3), torch.compile autocast 0.99962 (1.1e-2), where FP16 reaches 0.999997; resnet20
            # 0.9997 (1.6e-2). bf16 cannot share FP16's bounds; these leave about 3x room on each figure.
            Tolerance(0.05, 0.999, 1.0, checked=("photos",)),
            "an execution setting on the FP32 graph: OpenVINO's bf16 hint, torch autocast",
            exported=False,
        ),
    )
}
#: What ``rbench export`` makes (``--precision all``); ``rbench run`` takes every precision.
EXPORTED = tuple(p.name for p in PRECISIONS.values() if p.exported and p.made_by == "export")
#: The ONNX files every ONNX backend (TensorRT included) runs: what ``rbench build`` takes.
PORTABLE = tuple(p.name for p in PRECISIONS.values() if p.portable)


def with_variants(names: list[str]) -> list[str]:
    """``names`` and every backend-tuned variant of each (``int8`` brings ``int8-u8s8`` and ``int8-nncf``), in
    registry order."""
    return [p.name for p in PRECISIONS.values() if p.name in names or p.variant_of in names]


def get_precision(name: str) -> Precision:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise unknown_choice("precision", name, PRECISIONS) from None


def precision_of_file(file_name: str) -> str | None:
    """The precision whose artifact file is called ``file_name``, if any."""
    return next((p.name for p in PRECISIONS.values() if p.file == file_name), None)


def parse_precisions(text: str, choices: tuple[str, ...] = EXPORTED, fp32_first: bool = True) -> list[str]:
    """A comma list (or ``all``) of ``choices`` → precisions in registry order; with ``fp32_first`` FP32 is always
    included and first, as export makes the others from it."""
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(choices)
    bad = [p for p in names if p not in choices]
    if bad or not names:
        shown = ", ".join(repr(b) for b in bad) or repr(text)
        raise BadInputError(f"unknown precision {shown}; choose from {', '.join(choices)}, or all")
    return [p for p in choices if p in names or (fp32_first and p == "fp32")]


FAMILY_LABELS = {"every": "every model", "default": "ImageNet ResNets", "cifar": "CIFAR ResNets", "plain": "plain nets"}


def markdown_table() -> str:
    """The README's table of bounds, rendered from this registry (a test keeps the README equal to it)."""
    rows = ["| precision | model family | max abs error ≤ (× max \\|ref\\|) | cosine ≥ | top-1 ≥ | judged on |"]
    rows.append("|---|---|---|---|---|---|")
    for p in PRECISIONS.values():
        if p.variant_of is not None:
            continue  # a variant is held to its precision's bounds, and named on its rows
        name = ", ".join([p.name, *(v.name for v in PRECISIONS.values() if v.variant_of == p.name)])
        for family, tol in (("default", p.tolerance), *p.family_tolerance):
            family = FAMILY_LABELS[family if p.family_tolerance else "every"]
            rows.append(
                f"| {name} | {family} | {tol.max_abs_rel:g} | {tol.min_cosine:g} | {tol.min_top1:.0%} "
                f"| {', '.join(tol.checked)} |"
            )
    return "\n".join(rows)
