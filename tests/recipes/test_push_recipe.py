"""recipes/push.py: a dry run in a subprocess (no network), the push path with the Hub call replaced, its config."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

from hfkit.parsing import parse_args
from tests.conftest import REPO, write_tiny_model
from tests.recipes.test_classify_recipe import load_recipe

SECRET = "hf_" + "Zyx987" * 6
LOADABLE = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture
def run_dir(tmp_path, tiny_tokenizer):
    """A finished classifier run: model, tokenizer, reports, and training state that must not be uploaded."""
    folder = write_tiny_model(tmp_path / "run", tiny_tokenizer)
    report = {
        "model": "org/base",
        "num_examples": 40,
        "labels": ["neg", "pos"],
        "metrics": {"accuracy": 0.75},
    }
    (folder / "eval_report.json").write_text(json.dumps(report))
    (folder / "trainer_state.json").write_text(json.dumps({"num_train_epochs": 2, "log_history": []}))
    (folder / "training_args.bin").write_bytes(b"\x80\x04 training state")
    (folder / "checkpoint-1").mkdir()
    (folder / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")
    return folder


@pytest.fixture
def recipe():
    module = load_recipe("push")
    yield module
    logging.getLogger("hfkit").setLevel(logging.NOTSET)  # main() raised it to INFO for its listing


def test_dry_run_builds_and_lists_the_folder_without_network(run_dir, tmp_path):
    out = tmp_path / "upload"
    cmd = [
        sys.executable, str(REPO / "recipes" / "push.py"), "--model_dir", str(run_dir), "--out_dir", str(out),
        "--repo_id", "me/tiny-sst2", "--dry_run", "true", "--license", "mit", "--dataset", "stanfordnlp/sst2",
        "--teacher", "org/teacher", "--method", "distillation", "--temperature", "3", "--alpha", "0.7",
    ]  # fmt: skip
    # Any Hub request would go to a closed local port and fail; a token in the environment must not leak.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = subprocess.run(cmd, capture_output=True, text=True, env={**env, "HF_TOKEN": SECRET}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    assert {p.name for p in out.iterdir()} == LOADABLE
    assert f"Upload folder {out} (5 files):" in result.stdout
    for name in LOADABLE:
        assert f"  {name}" in result.stdout
    assert f"Model card: {out / 'README.md'}" in result.stdout
    assert "Dry run: nothing uploaded" in result.stdout
    assert "not uploaded (not needed to load the model): checkpoint-1/, eval_report.json" in result.stderr
    assert SECRET not in result.stdout + result.stderr

    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "mit" and meta["base_model"] == "org/base"
    assert meta["datasets"] == ["stanfordnlp/sst2"] and "distillation" in meta["tags"]
    assert meta["model-index"][0]["results"][0]["metrics"] == [{"type": "accuracy", "value": 0.75}]
    assert "(temperature 3.0, alpha 0.7)" in card.text
    assert 'AutoModelForSequenceClassification.from_pretrained("me/tiny-sst2")' in card.text


def test_push_calls_push_to_hub_with_the_arguments(run_dir, recipe, monkeypatch):
    calls = []
    monkeypatch.setattr(recipe, "push_to_hub", lambda *a, **kw: calls.append((a, kw)))
    folder = recipe.main(["--model_dir", str(run_dir), "--repo_id", "me/tiny", "--private", "false",
                          "--commit_message", "v1"])  # fmt: skip
    assert folder == run_dir.parent / "run_upload"  # default: next to the model folder
    assert {p.name for p in folder.iterdir()} == LOADABLE
    assert calls == [((folder, "me/tiny"), {"private": False, "commit_message": "v1"})]


def test_dry_run_does_not_push_and_push_needs_a_repo_id(run_dir, recipe, monkeypatch, tmp_path):
    monkeypatch.setattr(recipe, "push_to_hub", lambda *a, **kw: pytest.fail("dry run pushed"))
    recipe.main(["--model_dir", str(run_dir), "--out_dir", str(tmp_path / "a"), "--dry_run", "true"])
    assert (tmp_path / "a" / "README.md").is_file()
    with pytest.raises(ValueError, match="--repo_id is required to push .*or pass --dry_run true"):
        recipe.main(["--model_dir", str(run_dir), "--out_dir", str(tmp_path / "b")])
    assert not (tmp_path / "b").exists()


def test_a_second_run_needs_overwrite(run_dir, recipe, tmp_path):
    args = ["--model_dir", str(run_dir), "--out_dir", str(tmp_path / "a"), "--dry_run", "true"]
    recipe.main(args)
    with pytest.raises(FileExistsError, match="not empty"):
        recipe.main(args)
    assert recipe.main([*args, "--overwrite_output_dir", "true"]) == tmp_path / "a"


def test_example_config_is_a_dry_run(recipe, monkeypatch):
    monkeypatch.chdir(REPO)
    args, card = parse_args(recipe.ARG_TYPES, ["--config", "recipes/configs/push/example.yaml"])
    assert args.dry_run is True and args.private is True and "/" in args.repo_id
    assert card.datasets == ["stanfordnlp/sst2"] and card.temperature == 2.0 and card.license == "apache-2.0"
