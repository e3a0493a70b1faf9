"""PNG plots that read without the table: titles with units, the machine named, skipped rows listed."""

from __future__ import annotations

import io
from typing import Any

from rbench.bench.report import machine
from rbench.bench.results import baseline_throughput, rows_of


def _figure(title: str, data: dict[str, Any]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    fig.suptitle(title, fontsize=12)
    ax.set_title(f"{data['artifact'].rsplit('/', 1)[-1]} on {machine(data)}", fontsize=8)
    import textwrap

    from rbench.bench.report import skipped_groups

    skipped = [f"{label} ({why})" for _, label, why in skipped_groups(rows_of(data))]
    if skipped:
        lines = textwrap.wrap("did not run: " + "; ".join(skipped), 190)
        fig.text(0.01, 0.01, "\n".join(lines[:6] + (["..."] if len(lines) > 6 else [])), fontsize=6, va="bottom")
    return fig, ax


def _style(i: int, label: str) -> dict[str, Any]:
    """A colour per row (20 distinct ones) and a marker per backend (its spec's), so no two lines look alike."""
    import matplotlib

    from rbench.runtime.registry import BACKENDS

    spec = BACKENDS.get(label.split()[0])
    return {"color": matplotlib.colormaps["tab20"](i % 20), "marker": spec.marker if spec else "o"}


def _batch_axis(ax: Any, data: dict[str, Any]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    sizes = list(data["config"]["batch_sizes"])
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _finish(fig: Any, ax: Any, data: dict[str, Any]) -> bytes:
    """Batch sizes as the x ticks, plain numbers, a legend and a grid: the line plots' common end."""
    _batch_axis(ax, data)
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def _png(fig: Any, rect: tuple[float, float, float, float] = (0, 0.09, 1, 1)) -> bytes:
    """The figure as PNG bytes, laid out in ``rect`` (by default leaving room below for the skipped rows)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout(rect=rect)
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _series(data: dict[str, Any], key: str) -> list[tuple[str, list[int], list[float]]]:
    """(row label, batch sizes, ``key`` of each point's measurement: ms for latencies, images/s for throughput)."""
    out = []
    for r in rows_of(data):
        points = [p for p in r.points if p.stats is not None]
        if points:
            values = [getattr(p.stats, key) * (1 if key == "throughput" else 1e3) for p in points]
            out.append((r.label, [p.batch for p in points], values))
    return out


def latency_plot(data: dict[str, Any]) -> bytes:
    fig, ax = _figure("Latency per batch: p50 (solid) and p99 (dashed)", data)
    for i, ((label, batches, p50), (_, _, p99)) in enumerate(
        zip(_series(data, "p50"), _series(data, "p99"), strict=True)
    ):
        style = _style(i, label)
        ax.plot(batches, p50, label=label, **style)
        ax.plot(batches, p99, linestyle="--", color=style["color"])
    ax.set(xlabel="batch size (images)", ylabel="latency per batch (ms, log)", xscale="log", yscale="log")
    return _finish(fig, ax, data)


def throughput_plot(data: dict[str, Any]) -> bytes:
    fig, ax = _figure("Throughput vs batch size", data)
    for i, (label, batches, values) in enumerate(_series(data, "throughput")):
        ax.plot(batches, values, label=label, **_style(i, label))
    ax.set(xlabel="batch size (images)", ylabel="throughput (images/s)", xscale="log")
    return _finish(fig, ax, data)


def speedup_plot(data: dict[str, Any]) -> bytes:
    import numpy as np

    fig, ax = _figure("Speedup over eager PyTorch FP32 (throughput ratio, same batch, same run)", data)
    base = baseline_throughput(rows_of(data))
    series = [(label, dict(zip(b, v, strict=True))) for label, b, v in _series(data, "throughput")]
    batch_sizes = sorted(base)
    width = 0.8 / max(1, len(batch_sizes))
    y = np.arange(len(series))
    for i, batch in enumerate(batch_sizes):
        ratios = [values.get(batch, 0) / base[batch] for _, values in series]
        bars = ax.barh(y + i * width, ratios, height=width, label=f"batch {batch}")
        ax.bar_label(bars, labels=[f"{r:.2f}x" for r in ratios], fontsize=6, padding=2)
    ax.set_yticks(y + width * (len(batch_sizes) - 1) / 2, [label for label, _ in series], fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set(xlabel="speedup (x, higher is faster)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def streams_plot(data: dict[str, Any]) -> bytes:
    fig, ax = _figure("Throughput with requests in flight (--streams), per batch size", data)
    i = 0
    for r in rows_of(data):
        for batch, found in r.concurrency.items():
            measured = [m for m in found if "throughput" in m]
            if measured:
                labels = [f"{m['requests']} req, {m['mode'].split('=')[-1]}" for m in measured]
                values = [m["throughput"] for m in measured]
                ax.plot(labels, values, label=f"{r.label} b{batch}", **_style(i, r.label))
                i += 1
    ax.set(xlabel="requests in flight (setting)", ylabel="throughput (images/s)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def plots(data: dict[str, Any]) -> dict[str, bytes]:
    found = {"latency": latency_plot(data), "throughput": throughput_plot(data), "speedup": speedup_plot(data)}
    if any(r.concurrency for r in rows_of(data)):
        found["streams"] = streams_plot(data)
    return found


def fleet_plot(report: dict[str, Any]) -> bytes:
    """``rbench fleet report``'s grouped bars: images/s of each passing backend x precision, one bar per machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(report["matrix"])
    names = [m["name"] for m in report["machines"]]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(keys) * max(1, len(names))), 4), dpi=100)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        cells = [report["matrix"][k][name] for k in keys]
        values = [c["images_per_s"] if c and c.get("passed") else 0 for c in cells]
        ax.bar(np.arange(len(keys)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(keys)) + width * (len(names) - 1) / 2, keys, rotation=30, ha="right")
    ax.set_ylabel("images/s (best batch, passing rows)")
    ax.set_title("rbench fleet")
    ax.legend(fontsize=8)
    return _png(fig, rect=(0, 0, 1, 1))
