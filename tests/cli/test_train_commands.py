"""rbench train, eval, predict, experiment and inspect --compare from the command line, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_exit_2 as _one_line_exit_2
from conftest import cli_run as run
from conftest import write_image_tree


@pytest.fixture(scope="module")
def digits_artifact(digits_run, tmp_path_factory):
    """The trained digits model exported in FP32, FP16 and INT8 (what the tests below run), INT8 calibrated on its
    training split (auto)."""
    out = tmp_path_factory.mktemp("artifacts")
    weights = digits_run.run_dir / "best.safetensors"
    result = run("export", "--weights", weights, "--precision", "fp32,fp16,int8", "--out", out)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def test_export_reads_the_checkpoint_metadata(digits_artifact, digits_run):
    manifest = json.loads((digits_artifact / "manifest.json").read_text())
    m = manifest["model"]
    assert m["name"] == "resnet20" and m["class_names"] == [str(d) for d in range(10)]
    assert m["preprocess"]["resize"] == 32 and m["trained"]["dataset"]["name"] == "digits"
    assert manifest["precisions"]["int8"]["settings"]["calibration"] == "digits"
    wrong = run("export", "--weights", digits_run.run_dir / "best.safetensors", "--model", "resnet56")
    _one_line_exit_2(wrong, "is a resnet20 checkpoint, not resnet56")


def test_eval_on_a_backend_equals_eval_in_pytorch(digits_artifact, digits_run, tmp_path):
    torch_eval = run(
        "eval", digits_run.run_dir / "best.safetensors", "--data", "digits", "--json", "--out", tmp_path / "t"
    )
    assert torch_eval.exit_code == 0, torch_eval.output
    expected = json.loads(torch_eval.stdout)
    assert set(expected) >= {"top1", "top5"} and expected["top1"] > 0.85
    ort = run("eval", digits_artifact, "--data", "digits", "--precision", "fp32,fp16,int8", "--json", "--out", tmp_path)
    assert ort.exit_code == 0, ort.output
    rows = {r["precision"]: r for r in json.loads(ort.stdout)["rows"]}
    assert rows["fp32"]["top1"] == expected["top1"] and rows["fp32"]["agreement"] == 1.0
    assert rows["fp16"]["agreement"] >= 0.995
    assert rows["int8"]["top1"] >= expected["top1"] - 0.01
    assert (tmp_path / "confusion-ort-fp32.png").read_bytes()[:4] == b"\x89PNG"
    confusion = np.asarray(rows["fp32"]["confusion"])
    assert confusion.sum() == 360 and np.trace(confusion) == round(expected["top1"] * 360)


def test_predict_names_the_right_classes(digits_artifact, tmp_path):
    from PIL import Image

    from rbench.data import digits_images

    for name, image in list(digits_images("val").items())[:12]:
        label = name.split("-")[1].removesuffix(".png")
        (tmp_path / label).mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / label / name)
    grid = tmp_path / "grid.png"
    result = run("predict", tmp_path, "--artifact", digits_artifact, "--json", "--grid", grid)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert len(found) == 12 and all(len(p["top"]) == 5 for p in found)
    for p in found:  # softmax probabilities, best first, summing to at most 1 over the top five of ten
        probs = [c["probability"] for c in p["top"]]
        assert probs == sorted(probs, reverse=True) and 0.5 < sum(probs) <= 1 + 1e-6
    assert sum(p["top"][0]["class"] == p["true"] for p in found) >= 10
    assert grid.read_bytes()[:4] == b"\x89PNG"


def test_run_eval_data_adds_accuracy_to_every_row(digits_artifact, tmp_path):
    result = run(
        "run", "--artifact", digits_artifact, "--eval-data", "digits", "--backends", "torch,ort", "--precision",
        "fp32,int8", "--batch-sizes", "8", "--duration-s", "0.2", "--warmup-s", "0.05", "--out", tmp_path, "--json",
        "--no-peak",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    ran = [r for r in data["rows"] if not r["skipped"]]
    assert len(ran) >= 3 and all(r["accuracy"]["top1"] > 0.85 for r in ran)
    assert all(r["accuracy"]["images"] == 360 for r in ran)
    assert "accuracy_top1" in (tmp_path / "results.csv").read_text().splitlines()[0]
    assert "## Accuracy on digits validation split" in (tmp_path / "report.md").read_text()


def test_train_bad_input_is_one_line_and_writes_nothing(tmp_path, digits_run):
    (tmp_path / "empty").mkdir()
    write_image_tree(tmp_path / "one", {"only": 3})
    write_image_tree(tmp_path / "two", {"a": 4, "b": 4})
    write_image_tree(tmp_path / "val", {"a": 2, "c": 2})
    write_image_tree(tmp_path / "broken", {"a": 4, "b": 4})
    (tmp_path / "broken" / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "labels.csv").write_text("folder,name\na,alpha\nx,chi\n")
    out = tmp_path / "runs"
    ckpt = digits_run.run_dir / "best.safetensors"
    cases = [
        (["--data", tmp_path / "empty"], "no images"),
        (["--data", tmp_path / "one"], "has one class folder (only)"),
        (["--data", tmp_path / "broken"], "cannot read image"),
        (["--data", tmp_path / "two", "--labels", tmp_path / "labels.csv"], "does not match the folders"),
        (["--data", tmp_path / "two", "--val-data", tmp_path / "val"], "validation classes absent from training: c"),
        (["--data", "digits", "--model", "resnet56", "--init", ckpt], "is a resnet20 checkpoint, not resnet56"),
        (["--data", "digits", "--model", "resnet18", "--init", ckpt], "is a resnet20 checkpoint"),
        (["--data", "nowhere"], "folder not found: nowhere"),
        (["--epochs", "0"], "--epochs must be 1 or more"),
        (["--optimizer", "lion"], "'lion' is not one of"),
        (["--augment", "blur"], "unknown augmentation blur"),
        (["--val-split", "1.5", "--data", tmp_path / "two"], "--val-split must be between 0 and 1"),
        (["--resume", tmp_path / "empty"], "no config.json"),
    ]  # fmt: skip
    for args, message in cases:
        _one_line_exit_2(run("train", *args, "--out", out), message)
    assert not out.exists()


def test_a_torchvision_style_checkpoint_of_another_architecture_is_refused(tmp_path):
    import torch

    from rbench.models import create_model

    torch.save(create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")
    result = run("train", "--model", "resnet34", "--init", tmp_path / "resnet18.pth", "--out", tmp_path / "runs")
    _one_line_exit_2(result, "do not fit this model")
    assert not (tmp_path / "runs").exists()


def test_inspect_compare_gives_the_papers_arithmetic():
    blocks = json.loads(run("inspect", "--compare", "basic,bottleneck", "--json").stdout)["blocks"]
    assert [b["weights"] for b in blocks] == [1_179_648, 69_632]
    shortcuts = json.loads(run("inspect", "--compare", "identity,projection", "--json").stdout)["shortcuts"]
    by = {(s["model"], s["option"]): s for s in shortcuts}
    assert by[("resnet20", "A")]["shortcut_parameters"] == 0
    assert by[("resnet20", "B")]["shortcut_parameters"] == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64  # 1×1 convs + BN
    assert by[("resnet20", "B")]["model_parameters"] - by[("resnet20", "A")]["model_parameters"] == 2752
    _one_line_exit_2(
        run("inspect", "--compare", "basic,plain"), "--compare takes basic,bottleneck or identity,projection"
    )


def test_gradients_experiment_shows_vanishing_without_batchnorm(tmp_path):
    result = run("experiment", "gradients", "--depth", "20", "--steps", "2", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert (folder / "gradients.png").is_file() and (folder / "gradients.json").is_file()
    v = found["variants"]
    assert len(v) == 8 and all(len(x["at_init"]) == 19 for x in v.values())  # 19 main-path convolutions
    dead = np.median(v["plain20 without BatchNorm, pytorch-default init"]["at_init"])
    alive = np.median(v["plain20 with BatchNorm, pytorch-default init"]["at_init"])
    assert dead < 1e-3 * alive
    residual = v["resnet20 without BatchNorm, pytorch-default init"]["at_init"]
    assert np.median(residual) > 1e3 * dead  # the shortcuts carry the gradient


def test_degradation_experiment_writes_curves_and_a_verdict(tmp_path):
    from rbench.train.experiments import degradation

    found = degradation(tmp_path, epochs=2, limit=64, depths=(20, 32))
    assert set(found["models"]) == {"plain20", "plain32", "resnet20", "resnet32"}
    assert all(len(m["train_error"]) == 2 for m in found["models"].values())
    verdict = found["verdict"]
    assert verdict["plain"]["deep"] == "plain32" and isinstance(verdict["shown"], bool)
    assert verdict["summary"].startswith("degradation shown" if verdict["shown"] else "degradation NOT shown")
    assert (tmp_path / "degradation.png").read_bytes()[:4] == b"\x89PNG"


def test_degradation_verdict_reads_where_training_ends():
    from rbench.train.experiments import degradation_verdict

    def curves(plain56: float, resnet56: float) -> dict:
        # the deeper nets start slower; what counts is the error where training ends
        return {
            "plain20": {"train_error": [0.8, 0.1, 0.0, 0.0, 0.0]},
            "plain56": {"train_error": [0.9, 0.6, plain56, plain56, plain56]},
            "resnet20": {"train_error": [0.7, 0.05, 0.0, 0.0, 0.0]},
            "resnet56": {"train_error": [0.9, 0.4, resnet56, resnet56, resnet56]},
        }

    assert degradation_verdict(curves(0.10, 0.0))["shown"] is True
    assert degradation_verdict(curves(0.10, 0.05))["shown"] is False  # the deeper ResNet is worse too
    assert degradation_verdict(curves(0.005, 0.0))["shown"] is False  # within the 1-point margin


def test_train_export_eval_on_separate_folders_with_a_labels_file(tmp_path):
    """The Kaggle layout end to end: training/n0..n2, validation/n0..n2, a labels CSV; eval from another folder."""
    write_image_tree(tmp_path / "training", {"n0": 12, "n1": 12, "n2": 12})
    write_image_tree(tmp_path / "validation", {"n0": 4, "n1": 4, "n2": 4}, seed=5)
    (tmp_path / "labels.csv").write_text("Label,Common Name\nn0,howler\nn1,patas\nn2,uakari\n")
    trained = run(
        "train", "--data", tmp_path / "training", "--val-data", tmp_path / "validation", "--labels",
        tmp_path / "labels.csv", "--epochs", "4", "--batch-size", "12", "--out", tmp_path / "runs", "--json",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    run_dir = Path(trained.stdout.strip().splitlines()[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["classes"] == ["howler", "patas", "uakari"] and metrics["val_images"] == 12
    exported = run(
        "export", "--weights", run_dir / "best.safetensors", "--precision", "fp32,int8", "--out", tmp_path / "a"
    )
    assert exported.exit_code == 0, exported.output
    artifact = Path(exported.stdout.strip().splitlines()[-1])
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["precisions"]["int8"]["settings"]["calibration"] == str((tmp_path / "training").resolve())
    checkpoint = run(
        "eval", run_dir / "best.safetensors", "--data", tmp_path / "validation", "--json", "--out", tmp_path / "e"
    )
    on_ort = run("eval", artifact, "--data", tmp_path / "validation", "--json", "--out", tmp_path / "e")
    assert checkpoint.exit_code == 0 and on_ort.exit_code == 0, checkpoint.output + on_ort.output
    a, b = json.loads(checkpoint.stdout), json.loads(on_ort.stdout)
    assert a["top1"] == b["top1"] == metrics["best_val_top1"]  # best.safetensors is the best epoch
    assert b["rows"][0]["images"] == 12 and b["rows"][0]["agreement"] == 1.0
    predicted = run("predict", tmp_path / "validation" / "n1", "--artifact", artifact, "--json")
    assert predicted.exit_code == 0, predicted.output
    assert {p["true"] for p in json.loads(predicted.stdout)} == {"patas"}  # folder n1, named by the labels file
