"""User errors in a recipe run: one message on stderr, exit code 2, no traceback (issue 12)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from hfkit.logs import _PhaseFormatter
from hfkit.runtime import run_recipe
from tests.conftest import REPO, write_tiny_model, write_toy_tsv
from tests.recipes.test_classify_recipe import load_recipe


@pytest.fixture(autouse=True)
def log_handler_of_this_test(monkeypatch):
    """setup_logging adds its stderr handler once per process; one bound to an earlier test's captured stderr
    fails once that capture is closed ("--- Logging error ---" and a traceback): each test here gets its own."""
    root = logging.getLogger()
    monkeypatch.setattr(
        root, "handlers", [h for h in root.handlers if not isinstance(h.formatter, _PhaseFormatter)]
    )


def run_main(recipe: str, argv: list[str], capsys) -> str:
    """Run recipes/<recipe>.py's main through run_recipe as `__main__` does; return stderr (exit code 2)."""
    with pytest.raises(SystemExit) as info:
        run_recipe(load_recipe(recipe).main, argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


def test_subprocess_user_error_exits_2_with_one_message(tmp_path):
    """The real `python recipes/classify.py`: an unknown key is one message on stderr, exit 2, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "HFKIT_DEBUG"}
    cmd = [sys.executable, str(REPO / "recipes" / "classify.py"), "--model_name_or_path", "x",
           "--train_file", "x.csv", "--output_dir", str(tmp_path), "--learning_rat", "1e-4"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown key 'learning_rat'" in result.stderr and "learning_rate" in result.stderr


def test_post_init_check_is_a_user_error(tmp_path, capsys):
    """A check in a config's __post_init__ (here TrainingArguments') is reported, not raised with a traceback."""
    err = run_main(
        "classify",
        ["--model_name_or_path", "x", "--train_file", "x.csv", "--output_dir", str(tmp_path),
         "--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "epoch"],
        capsys,
    )  # fmt: skip
    assert err.startswith("error: ") and "load_best_model_at_end" in err


@pytest.mark.parametrize("recipe", ["classify", "clm"])
def test_missing_local_model_folder_is_named(recipe, tmp_path, capsys):
    """Not "Repo id must be in the form ...": the folder that does not exist, by name."""
    train = write_toy_tsv(tmp_path / "train.tsv", 20, seed=0)
    missing = str(tmp_path / "no" / "such" / "model")
    args = ["--model_name_or_path", missing, "--train_file", str(train), "--output_dir", str(tmp_path / "o"),
            "--use_cpu", "true"]  # fmt: skip
    if recipe == "classify":
        args += ["--text_column", "sentence", "--label_column", "sentiment"]
    else:
        args += ["--text_column", "sentence"]
    err = run_main(recipe, args, capsys)
    assert missing in err and "does not exist" in err and "Repo id" not in err


@pytest.mark.parametrize("size", ["empty", "truncated"])
@pytest.mark.parametrize("role", ["student", "teacher"])
def test_broken_model_safetensors_is_named(role, size, tmp_path, tiny_tokenizer, capsys):
    """A truncated or empty model.safetensors, student or teacher: the file is named (not a bare SafetensorError)."""
    good = write_tiny_model(tmp_path / "good", tiny_tokenizer)
    bad = write_tiny_model(tmp_path / "bad", tiny_tokenizer)
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(b"" if size == "empty" else data[: len(data) // 2])
    train = write_toy_tsv(tmp_path / "train.tsv", 40, seed=0)
    teacher, student = (bad, good) if role == "teacher" else (good, bad)
    err = run_main(
        "distill",
        ["--teacher_name_or_path", str(teacher), "--student_name_or_path", str(student),
         "--train_file", str(train), "--text_column", "sentence", "--label_column", "sentiment",
         "--output_dir", str(tmp_path / "o"), "--use_cpu", "true", "--max_steps", "1"],
        capsys,
    )  # fmt: skip
    assert str(weights) in err and ("empty" if size == "empty" else "truncated") in err


@pytest.mark.parametrize(
    "recipe, role", [("classify", "model"), ("distill", "teacher"), ("distill", "student")]
)
def test_model_folder_without_weights_is_one_error_line(recipe, role, tmp_path, tiny_tokenizer, capsys):
    """config.json but no model.safetensors (a copy that left the weights behind): not from_pretrained's OSError."""
    good = write_tiny_model(tmp_path / "good", tiny_tokenizer)
    bad = write_tiny_model(tmp_path / "bad", tiny_tokenizer)
    (bad / "model.safetensors").unlink()
    train = write_toy_tsv(tmp_path / "train.tsv", 40, seed=0)
    args = ["--train_file", str(train), "--text_column", "sentence", "--label_column", "sentiment",
            "--output_dir", str(tmp_path / "o"), "--use_cpu", "true", "--max_steps", "1"]  # fmt: skip
    if recipe == "classify":
        args += ["--model_name_or_path", str(bad)]
    else:
        teacher, student = (bad, good) if role == "teacher" else (good, bad)
        args += ["--teacher_name_or_path", str(teacher), "--student_name_or_path", str(student)]
    capsys.readouterr()  # the tiny models' save progress
    *logged, last = run_main(recipe, args, capsys).splitlines()  # log lines of the run so far, then the error
    assert last.startswith("error: ") and not any(line.startswith("error") for line in logged)
    assert f"{bad} has a config.json but no weights file" in last and "save_pretrained" in last


def test_mistyped_hub_id_offline_is_one_error_line(tmp_path, capsys, monkeypatch):
    """HF_HUB_OFFLINE=1 and an id that is in no cache: not "check your internet connection"."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable when it is imported: set as if it had been set before.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    train = write_toy_tsv(tmp_path / "train.tsv", 40, seed=0)
    *logged, last = run_main(
        "classify",
        ["--model_name_or_path", "bert-base-uncasd", "--train_file", str(train), "--text_column", "sentence",
         "--label_column", "sentiment", "--output_dir", str(tmp_path / "o"), "--use_cpu", "true"],
        capsys,
    ).splitlines()  # fmt: skip
    assert last.startswith(
        "error: model 'bert-base-uncasd' is neither a local folder nor in the Hugging Face"
    )
    assert not any(line.startswith("error") for line in logged)
    assert "HF_HUB_OFFLINE" in last and "internet" not in last
