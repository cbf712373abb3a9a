"""User errors in a recipe run: one message on stderr, exit code 2, no traceback (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hfkit.runtime import run_recipe
from tests.conftest import REPO, write_tiny_model, write_toy_tsv
from tests.recipes.test_classify_recipe import load_recipe


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
