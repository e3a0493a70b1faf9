"""Training: it learns, takes one optimizer step per batch, round-trips checkpoints, resumes exactly, fine-tunes
only the head when frozen, caches features, and runs under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import write_image_tree

from rbench.models.checkpoint import load_checkpoint, read_meta
from rbench.progress import Silent
from rbench.train import TrainConfig, train
from rbench.train.config import resume_config


def test_a_short_run_on_digits_learns(digits_run):
    history = digits_run.history
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert digits_run.metrics["val_top1"] > 0.85  # chance is 0.10; measured 0.96 after 6 epochs
    files = {p.name for p in digits_run.run_dir.iterdir()}
    assert {"best.safetensors", "last.safetensors", "metrics.json", "curves.csv", "curves.png"} <= files
    metrics = json.loads((digits_run.run_dir / "metrics.json").read_text())
    assert 0 <= metrics["val_top1"] <= 1 and metrics["val_top1"] == history[-1]["val_top1"]
    assert len((digits_run.run_dir / "curves.csv").read_text().splitlines()) == 1 + 6


def test_checkpoint_carries_what_export_needs(digits_run):
    meta = read_meta(digits_run.run_dir / "best.safetensors")
    assert meta["architecture"] == "resnet20" and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["preprocess"]["size"] == 32 and meta["preprocess"]["resize"] == 32  # digits: upscaled whole
    assert meta["dataset"] == {"name": "digits", "seed": 0, "val_split": 0.2}
    model, _ = load_checkpoint(digits_run.run_dir / "best.safetensors")
    assert not model.training and model.fc.out_features == 10


def _counting_steps(monkeypatch):
    calls = {"n": 0}
    original = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    return calls


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_exactly_one_optimizer_step_per_batch(tmp_path, monkeypatch, amp):
    calls = _counting_steps(monkeypatch)
    result = train(TrainConfig(data="synthetic", epochs=2, batch_size=10, amp=amp, limit=30, out=str(tmp_path)))
    assert calls["n"] == 2 * 3  # 30 images in batches of 10: 3 batches an epoch
    assert result.metrics["batches"] == 6 and result.metrics["skipped_steps"] == 0
    assert result.metrics["optimizer_steps"] == calls["n"]  # the metric counts the optimizer's real steps
    assert result.metrics["precision"] == ("bfloat16" if amp == "bf16" else "float32")


class _KilledAfter(Silent):
    """A progress display whose process is killed right after epoch ``n`` is reported (its files are written)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def note(self, message: str) -> None:
        if message.startswith(f"epoch {self.n}/"):
            raise KeyboardInterrupt


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    base = TrainConfig(data="synthetic", epochs=3, batch_size=32, limit=96, threads=1)
    straight = train(replace(base, out=str(tmp_path / "a")))
    with pytest.raises(KeyboardInterrupt):
        train(replace(base, out=str(tmp_path / "b")), _KilledAfter(2))
    (killed,) = (tmp_path / "b").iterdir()
    assert "metrics.json" not in {p.name for p in killed.iterdir()}
    resumed = train(resume_config(killed))
    assert resumed.run_dir == killed and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a = load_checkpoint(straight.run_dir / "last.safetensors")[0].state_dict()
    b = load_checkpoint(resumed.run_dir / "last.safetensors")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[:2] == train(resume_config(killed, epochs=4)).history[:2]  # the history carries on


def test_frozen_backbone_changes_only_the_head_and_caches_features(tmp_path, digits_run):
    init = str(digits_run.run_dir / "best.safetensors")
    data = write_image_tree(tmp_path / "shapes", {"a": 8, "b": 8, "c": 8})
    config = TrainConfig(data=str(data), freeze="backbone", init=init, epochs=3, out=str(tmp_path / "runs"))
    first = train(config)
    before = load_checkpoint(init)[0].state_dict()
    after = load_checkpoint(first.run_dir / "best.safetensors")[0].state_dict()
    changed = sorted(
        k for k in after if k in before and (before[k].shape != after[k].shape or not torch.equal(before[k], after[k]))
    )
    assert changed == ["fc.bias", "fc.weight"]
    assert after["fc.weight"].shape == (3, 64)  # a new head for the three classes
    assert first.metrics["feature_cache"]["hit"] is False
    again = train(config)
    assert again.metrics["feature_cache"]["hit"] is True
    assert again.metrics["feature_cache"]["file"] == first.metrics["feature_cache"]["file"]
    other_split = train(replace(config, seed=1))  # other data: the validation split differs
    assert other_split.metrics["feature_cache"]["hit"] is False
    other_init = train(replace(config, init=str(digits_run.run_dir / "last.safetensors")))
    changed_weights = read_meta(digits_run.run_dir / "last.safetensors")["epoch"] != read_meta(init)["epoch"]
    assert other_init.metrics["feature_cache"]["hit"] is (not changed_weights)
    views = train(replace(config, feature_views=2))
    assert views.metrics["feature_cache"]["hit"] is False


TORCHRUN = [str(Path(sys.executable).with_name("torchrun"))]
DDP_TRAIN = ["-m", "rbench", "train", "--data", "synthetic", "--epochs", "1", "--threads", "1"]


def _torchrun(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*TORCHRUN, *args, *DDP_TRAIN, "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    return stdout


@pytest.fixture(scope="module")
def single_node_ddp(tmp_path_factory) -> tuple[Path, str]:
    """Two processes on one node, one thread each: (the run folder, torchrun's standard output)."""
    out = tmp_path_factory.mktemp("ddp1")
    stdout = _finish(_torchrun(["--nproc-per-node", "2"], out))
    runs = list(out.glob("resnet20-synthetic-*"))
    assert len(runs) == 1
    return runs[0], stdout


def test_two_process_ddp_on_cpu_writes_one_checkpoint(single_node_ddp):
    """Also the shortest run: --epochs 1 with every other setting at its default (the warm-up shrinks to fit)."""
    run, stdout = single_node_ddp
    assert stdout.strip().splitlines()[-1] == str(run)
    assert len(list(run.parent.rglob("best.safetensors"))) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["train_images"] == 480 and metrics["epochs"] == 1
    topology = read_meta(run / "best.safetensors")["topology"]
    assert metrics["topology"] == topology
    assert topology == {"world_size": 2, "nodes": 1, "processes_per_node": 2, "threads_per_process": 1}


def test_a_two_node_rendezvous_trains_the_same_weights_as_one_node(single_node_ddp, tmp_path):
    """Two torchrun launches, --nnodes 2, a c10d rendezvous on loopback: one checkpoint, from rank 0 alone, whose
    weights are bit-identical to the single-node run's with the same world size, seed and --threads 1."""
    import socket

    from rbench.models.weights import load_state_dict_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    rendezvous += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "rbench-test"]
    launches = [_torchrun([*rendezvous, "--node-rank", str(n)], tmp_path / f"node{n}") for n in (0, 1)]
    for launch in launches:
        _finish(launch)
    written = list(tmp_path.rglob("best.safetensors"))
    assert len(written) == 1 and len(list(tmp_path.rglob("metrics.json"))) == 1
    two_nodes = load_state_dict_file(written[0])
    one_node = load_state_dict_file(single_node_ddp[0] / "best.safetensors")
    assert list(two_nodes) == list(one_node)
    assert [k for k in one_node if not torch.equal(one_node[k], two_nodes[k])] == []
    topology = read_meta(written[0])["topology"]
    assert topology == {"world_size": 2, "nodes": 2, "processes_per_node": 1, "threads_per_process": 1}


def test_a_full_fine_tune_gives_the_backbone_a_lower_learning_rate():
    from rbench.models import create_model
    from rbench.train.recipe import parameter_groups as _parameter_groups

    config = TrainConfig(init="any-checkpoint.safetensors", backbone_lr=0.1)
    groups = _parameter_groups(create_model("resnet20"), config)
    head = [g for g in groups if any(p.shape == (10, 64) for p in g["params"])]
    assert config.learning_rate() == 0.01  # a fine-tune starts from a tenth of SGD's 0.1
    assert head[0]["lr"] == 0.01 and {g["lr"] for g in groups if g is not head[0]} == {0.001}
    assert {g["weight_decay"] for g in groups if all(p.ndim == 1 for p in g["params"])} == {0.0}
    fresh = _parameter_groups(create_model("resnet20"), TrainConfig())
    assert {g["lr"] for g in fresh} == {0.1}  # from scratch: one learning rate


def test_a_step_the_grad_scaler_skips_is_not_counted_as_a_step(monkeypatch):
    """FP16 loss scaling skips the optimizer step on inf/NaN gradients (and halves the scale): that batch counts
    as a skipped step, and only real optimizer steps count as steps."""
    from rbench.train.loop import COUNTS, _Step

    calls = _counting_steps(monkeypatch)

    class Scaler:  # GradScaler's contract: step() skips optimizer.step() when it found inf/NaN gradients
        def __init__(self, skip: list[bool]):
            self.skip, self.scale_value = skip, 65536.0

        def is_enabled(self):
            return True

        def scale(self, loss):
            return loss

        def get_scale(self):
            return self.scale_value

        def step(self, optimizer):
            if self.skip.pop(0):
                self.scale_value /= 2
            else:
                optimizer.step()

        def update(self):
            pass

    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    counts = dict.fromkeys(COUNTS, 0)
    step = _Step(model, optimizer, schedule, Scaler([False, True, False]), torch.nn.CrossEntropyLoss(), None,
                 torch.device("cpu"), counts)  # fmt: skip
    for _ in range(3):
        step(torch.ones(2, 4), torch.tensor([0, 1]))
    assert counts == {"optimizer_steps": 2, "batches": 3, "skipped_steps": 1} and calls["n"] == 2


def test_the_default_warm_up_fits_every_run_length():
    assert [TrainConfig(epochs=e).warmup() for e in (1, 2, 30)] == [0.5, 1.0, 1.0]
    assert TrainConfig(epochs=3, warmup_epochs=5).warmup() == 1.5  # at most half the run, as --help says
