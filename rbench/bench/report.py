"""``report.md``: the three questions of a run, answered from ``results.json``'s data: how fast, how close to
PyTorch, how close to what this machine can do."""

from __future__ import annotations

from typing import Any

from rbench.bench.results import Row, baseline_throughput, rows_of


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.2f}"


def _pct(share: float | None) -> str:
    return "" if share is None else f"{share:.0%}"


def machine(data: dict[str, Any]) -> str:
    """The machine as its record names it: the CPU by what was read (family, model, stepping), cores, clock."""
    from rbench.bench.machine import describe_cpu

    env = data["environment"]
    clock = f", {env['cpu']['clock_mhz']:.0f} MHz" if env["cpu"].get("clock_mhz") else ""
    cpu = f"{describe_cpu(env['cpu'])}, {env['cpu']['logical_cores']} cores{clock}"
    gpu = env["gpu"].get("name")
    return f"{cpu}, {gpu}" if gpu else cpu


def markdown(data: dict[str, Any]) -> str:
    config, env, rows = data["config"], data["environment"], rows_of(data)
    lines = [
        f"# rbench run: {data['artifact'].rsplit('/', 1)[-1]}",
        "",
        f"{machine(data)}; {data['created']}; rbench {env['libraries'].get('rbench')} "
        f"({(env.get('rbench_git_sha') or 'no git')[:12]}), torch {env['libraries'].get('torch')}, "
        f"onnxruntime {env['libraries'].get('onnxruntime')}, openvino {env['libraries'].get('openvino')}.",
        f"Command: `{' '.join(data['command'])}` (seed {data['seed']}).",
        "",
        f"Each point: {config['warmup_s']:g} s of warm-up, then timed calls until {config['duration_s']:g} s and "
        f"{config['min_iterations']} calls have passed; inputs drawn from {config['pool_size']} distinct "
        f"preprocessed images, validated once outside the timed region. Latency is per call (one batch), host clock; "
        f"the harness itself costs {data['harness_overhead_s'] * 1e6:.1f} µs per call.",
        "",
        "## How fast, and how close to this machine's peak",
        "",
        "| row | executed | batch | p50 ms | p99 ms | images/s | vs eager fp32 | GFLOP/s | of peak | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += _speed_rows(rows)
    lines += ["", "## How close to PyTorch FP32 (unfolded), on the built-in photos", ""]
    lines += ["| row | max err / max\\|ref\\| | cosine | top-1 | bounds | parity |", "|---|---|---|---|---|---|"]
    lines += _parity_rows(rows)
    lines += _accuracy_lines(rows)
    lines += ["", "## Honesty audits (after MLPerf's TEST04, TEST01, TEST05)", ""]
    lines += _audit_lines(rows)
    lines += _loadgen_lines(rows)
    lines += _concurrency_lines(rows)
    lines += ["", "## Cold start", "", "| row | session / compile s | first call ms (per batch) |", "|---|---|---|"]
    lines += [
        f"| {r.label} | {r.session_s:.2f} | "
        + ", ".join(f"b{p.batch}: {_ms(p.first_inference_s)}" for p in r.points)
        + " |"
        for r in rows
        if r.session_s is not None
    ]
    lines += _peak_lines(data)
    skipped = [r for r in rows if r.skipped or r.error]
    if skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {r.label}: {f'skipped: {r.skipped}' if r.skipped else f'error: {r.error}'}" for r in skipped]
    lines += ["", f"Verdict: {'PASS' if data['passed'] else 'FAIL'} (parity and finite outputs on every row).", ""]
    return "\n".join(lines)


def skipped_groups(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(``skipped`` or ``error``, "backend variant precisions", reason), one per backend, variant and reason."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        if r.skipped or r.error:
            kind, why = ("skipped", r.skipped) if r.skipped else ("error", str(r.error))
            groups.setdefault((kind, f"{r.backend} {r.variant}".strip(), why), []).append(r.precision)
    return [(kind, f"{name} {', '.join(precisions)}", why) for (kind, name, why), precisions in groups.items()]


def _speed_rows(rows: list[Row]) -> list[str]:
    base = baseline_throughput(rows)
    lines = []
    for r in rows:
        for p in r.points:
            if p.stats is None:
                lines.append(f"| {r.label} | {r.executed} | {p.batch} | | | | | | | error: {p.error} |")
                continue
            s, e = p.stats, p.efficiency
            notes = list(p.warnings) + (["recompiled during timing"] if r.recompiled else [])
            if e is not None and e.probe_beaten:
                beyond = f", {e.share_of_theoretical:.0%} of the CPU's peak on paper" if e.share_of_theoretical else ""
                notes.append(f"probe beaten: the measured peak is a lower bound{beyond}")
            if p.compute_stats is not None:
                notes.append(f"compute only (CUDA events): p50 {_ms(p.compute_stats.p50)} ms")
            speed = f"{s.throughput / base[p.batch]:.2f}x" if p.batch in base else ""
            gflops, share = (e.gflops, e.share_of_peak) if e is not None else (0.0, None)
            lines.append(
                f"| {r.label} | {r.executed} | {p.batch} | {_ms(s.p50)} | {_ms(s.p99)} | {s.throughput:.1f} | "
                f"{speed} | {gflops:.0f} | {_pct(share)} | {'; '.join(notes)} |"
            )
    return lines


def _section(title: str, columns: list[str]) -> list[str]:
    """A section heading and the head of its table."""
    return ["", f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _concurrency_lines(rows: list[Row]) -> list[str]:
    rows = [r for r in rows if r.concurrency]
    if not rows:
        return []
    lines = _section(
        "Requests in flight (--streams)", ["row", "batch", "how", "requests", "streams x threads", "images/s"]
    )
    for r in rows:
        for batch, found in r.concurrency.items():
            for m in found:
                if "throughput" not in m:
                    lines.append(f"| {r.label} | {batch} | {m.get('error') or m.get('skipped')} | | | |")
                    continue
                lines.append(
                    f"| {r.label} | {batch} | {m['mode']} | {m['requests']} | "
                    f"{m['streams']} x {m['threads_per_stream']} | {m['throughput']:.1f} |"
                )
    return lines


def _loadgen_lines(rows: list[Row]) -> list[str]:
    rows = [r for r in rows if r.loadgen]
    if not rows:
        return []
    lines = _section("MLPerf LoadGen", ["row", "scenario", "result", "figure", "rbench p90 (batch 1)", "log"])
    for r in rows:
        lg = r.loadgen
        if "error" in lg:
            lines.append(f"| {r.label} | {lg.get('scenario', '')} | error: {lg['error']} | | | |")
            continue
        value = lg["value"]
        shown = f"{value / 1e6:.2f} ms" if lg["headline"].endswith(("latency", "query")) else f"{value:.1f}"
        own = (
            f"{lg['rbench_p90_ns'] / 1e6:.2f} ms ({lg['loadgen_over_rbench_p90']:.3f}x)"
            if "rbench_p90_ns" in lg
            else ""
        )
        lines.append(
            f"| {r.label} | {lg['scenario']} | {lg['validity']} | {lg['headline']}: {shown} | {own} | {lg['log']} |"
        )
    return lines


def _audit_lines(rows: list[Row]) -> list[str]:
    """One line per row: repeated/distinct latency (cache), timed outputs vs reference, seed change."""
    lines = [
        "| row | cache: repeated / distinct p50 (≥ 0.90) | timed outputs vs reference: cosine | seed: throughput "
        "change (≤ 5%, --audit) | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        audits = [p.audits for p in r.points]
        cache = next((a["cache"] for a in audits if "cache" in a), None)
        seed = next((a["seed"] for a in audits if "seed" in a), None)
        outputs = [a["outputs"] for a in audits if a.get("outputs")]
        if not (cache or outputs):
            continue
        found = [a["finding"] for a in (cache, seed, *outputs) if a and a.get("finding")]
        change = f"{seed['throughput_change']:+.1%}" if seed else "not run"
        cosine = f"{min(o['cosine'] for o in outputs)} ({sum(o['calls'] for o in outputs)} calls)" if outputs else ""
        ratio = cache["ratio"] if cache else ""
        lines.append(f"| {r.label} | {ratio} | {cosine} | {change} | {'; '.join(found) if found else 'pass'} |")
    return lines


def _accuracy_lines(rows: list[Row]) -> list[str]:
    measured = [r for r in rows if r.accuracy]
    if not measured:
        return []
    lines = ["", f"## Accuracy on {measured[0].accuracy['data']}", ""]
    lines += ["| row | top-1 | top-5 | same top-1 as PyTorch FP32 |", "|---|---|---|---|"]
    for r in measured:
        a = r.accuracy
        lines.append(f"| {r.label} | {a['top1']:.2%} | {a['top5']:.2%} | {a['agreement']:.2%} |")
    return lines


def _parity_rows(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        q = r.parity
        if not q:
            continue
        b = q["bounds"]
        verdict = "pass" if q["passed"] else "**FAIL**: " + "; ".join(q["failing"])
        lines.append(
            f"| {r.label} | {q['max_abs_rel']:.2e} | {q['cosine']} | {q['top1']:.0%} | "
            f"≤ {b['max_abs_rel']:g}, ≥ {b['cosine']:g}, ≥ {b['top1']:.0%} | {verdict} |"
        )
    return lines


def _peak_lines(data: dict[str, Any]) -> list[str]:
    """Every GEMM probe (each size, before and after the rows) and the CPU's peak on paper with its assumptions."""
    lines = _section(
        "Peak per precision (GEMM probes of each library, before and after the rows; rows use the best)",
        ["precision", "library", "n (n³ GEMM)", "round", "GFLOP/s"],
    )
    if not data["peaks"]["probes"]:
        lines.append("| not measured (--no-peak) | | | | |")
    lines += [
        f"| {p['precision']} | {p['library']} | {p.get('size', 2048)} | {p.get('round', 'before')} "
        f"| {p['gflops']:.0f} |"
        for p in data["peaks"]["probes"]
        if p["gflops"]
    ]
    paper = data["peaks"].get("theoretical") or {}
    if paper:
        lines += _section("The CPU's peak on paper", ["precision", "GFLOP/s", "FLOP per cycle per core", "assumptions"])
        lines += [f"| {k} | {t['gflops']:.0f} | {t['flop_per_cycle']} | {t['assumptions']} |" for k, t in paper.items()]
    return lines
