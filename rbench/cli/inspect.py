"""``rbench inspect``: parameters and multiply-accumulates of a model, stage by stage."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rbench.cli._common import add_columns, app, handle_errors, out, table
from rbench.errors import BadInputError


@app.command()
@handle_errors
def inspect(
    model: Annotated[str | None, typer.Argument(help="Model name.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classifier width [default: the model's own].")] = None,
    list_all: Annotated[bool, typer.Option("--list", help="List the registered models.")] = False,
    compare: Annotated[
        str | None,
        typer.Option(help="basic,bottleneck (block arithmetic) or identity,projection (shortcut options)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Parameters and multiply-accumulates per stage, and the bottleneck arithmetic."""
    from rbench.models import create_model, get_spec, list_models
    from rbench.models.stats import bottleneck_arithmetic, stage_stats

    if compare is not None:
        if model is not None or list_all:
            raise BadInputError("--compare stands alone: rbench inspect --compare basic,bottleneck")
        _compare(compare, as_json)
        return
    if list_all and model is not None:
        raise BadInputError(f"--list lists every model; give it alone, or inspect one: rbench inspect {model}")
    if list_all or model is None:
        names = list_models()
        out.print_json(json.dumps(names)) if as_json else out.print("\n".join(names))
        return
    spec = get_spec(model)
    if num_classes is not None and num_classes < 1:
        raise BadInputError(f"--num-classes must be 1 or more, got {num_classes}")
    stats = stage_stats(create_model(model, num_classes=num_classes), spec.input_shape)
    arithmetic = bottleneck_arithmetic(256)
    total_params, total_macs = sum(s.params for s in stats), sum(s.macs for s in stats)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "model": model,
                    "input_shape": list(spec.input_shape),
                    "stages": [
                        {"name": s.name, "params": s.params, "macs": s.macs, "output": list(s.output_shape)}
                        for s in stats
                    ],
                    "params": total_params,
                    "macs": total_macs,
                    "bottleneck_256": arithmetic,
                }
            )
        )
        return
    t = table(title=f"{model} at {'×'.join(map(str, spec.input_shape))}")
    add_columns(t, ("stage", "output", "parameters", "MACs"), left=("stage",))
    for s in stats:
        t.add_row(s.name, "×".join(map(str, s.output_shape)), f"{s.params:,}", f"{s.macs / 1e9:.3f} G")
    t.add_row("[bold]total[/]", "", f"[bold]{total_params:,}[/]", f"[bold]{total_macs / 1e9:.2f} G[/]")
    out.print(t)
    out.print(
        f"Bottleneck arithmetic at 256 channels: 1×1→3×3→1×1 has {arithmetic['bottleneck']:,} weights; "
        f"two 3×3 convolutions have {arithmetic['basic']:,} ({arithmetic['basic'] / arithmetic['bottleneck']:.1f}×)."
    )


COMPARISONS = {frozenset({"basic", "bottleneck"}): "blocks", frozenset({"identity", "projection"}): "shortcuts"}


def _compare(what: str, as_json: bool) -> None:
    from rbench.models.stats import block_comparison, shortcut_comparison

    kind = COMPARISONS.get(frozenset(t.strip() for t in what.split(",") if t.strip()))
    if kind is None:
        raise BadInputError(f"--compare takes basic,bottleneck or identity,projection, not {what!r}")
    if kind == "blocks":
        rows = block_comparison()
        if as_json:
            out.print_json(json.dumps({"channels": 256, "size": 56, "blocks": rows}))
            return
        t = table(title="One block at 256 channels, 56×56 (ResNet-50's first stage), from the real modules")
        add_columns(t, ("block", "convolutions", "weights", "MACs"), left=("block", "convolutions"))
        for r in rows:
            t.add_row(r["block"], ", ".join(r["convolutions"]), f"{r['weights']:,}", f"{r['macs'] / 1e6:,.0f} M")
        out.print(t)
        basic, bottleneck = rows[0]["weights"], rows[1]["weights"]
        out.print(f"The bottleneck has {basic / bottleneck:.1f}× fewer weights ({bottleneck:,} vs {basic:,}).")
        return
    rows = shortcut_comparison()
    if as_json:
        out.print_json(json.dumps({"shortcuts": rows}))
        return
    t = table(title="Shortcuts where a stage doubles its channels (16→32, 32→64), CIFAR ResNets")
    add_columns(
        t, ("model", "shortcut", "modules", "shortcut params", "model params"), left=("model", "shortcut", "modules")
    )
    for r in rows:
        t.add_row(
            r["model"],
            r["shortcut"],
            ", ".join(r["modules"]),
            f"{r['shortcut_parameters']:,}",
            f"{r['model_parameters']:,}",
        )
    out.print(t)
    out.print("Option A adds no parameters (the paper's CIFAR choice); option B learns a 1×1 projection.")
