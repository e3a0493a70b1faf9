"""The CPU's peak on paper, from a CPU record's flags and clock (no probe runs here)."""

import pytest

from rbench.bench.peak import theoretical_peaks

ZEN3 = {"vendor": "AuthenticAMD", "family": "25", "logical_cores": 2, "measured_clock_mhz": 3000.0,
        "flags": ["avx", "avx2", "fma", "f16c"]}  # fmt: skip
ZEN4 = {**ZEN3, "flags": ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"]}
SKYLAKE_SP = {"vendor": "GenuineIntel", "family": "6", "logical_cores": 2, "measured_clock_mhz": 3000.0,
              "flags": ["avx2", "fma", "avx512f"]}  # fmt: skip


@pytest.mark.parametrize(
    ("cpu", "fp32_per_cycle", "int8_per_cycle", "has_bf16", "int8_why", "width"),
    [
        (ZEN3, 32, 64, False, "no VNNI: int8 as VPMADDUBSW + VPMADDWD, 2x FP32", "256-bit vectors (AVX2, no AVX-512)"),
        (ZEN4, 32, 128, True, "VNNI int8 dot products 4x FP32", "256-bit vectors (AVX-512 on 256-bit halves"),
        (SKYLAKE_SP, 64, 128, False, "no VNNI", "512-bit vectors (AVX-512)"),
    ],
)
def test_peak_on_paper_per_precision(cpu, fp32_per_cycle, int8_per_cycle, has_bf16, int8_why, width):
    paper = theoretical_peaks(cpu)
    assert paper["fp32"].flop_per_cycle == fp32_per_cycle and width in paper["fp32"].assumptions
    assert "halves" not in paper["fp32"].assumptions or cpu is ZEN4  # a Zen 3 has no AVX-512 to split
    assert paper["fp32"].gflops == pytest.approx(2 * fp32_per_cycle * 3.0)  # 2 cores x 3 GHz
    assert paper["int8"].flop_per_cycle == int8_per_cycle and int8_why in paper["int8"].assumptions
    assert ("bf16" in paper) is has_bf16
    assert "3000 MHz (measured under load)" in paper["fp32"].assumptions


def test_no_peak_on_paper_without_a_clock_or_int8_without_avx2():
    assert theoretical_peaks({**ZEN3, "measured_clock_mhz": None}) == {}
    assert "int8" not in theoretical_peaks({**ZEN3, "flags": ["avx", "fma"]})
