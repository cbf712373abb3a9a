"""output_dir records what made it (run.json): a rerun resumes, finishes, or refuses other settings (issue 12)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging

import pytest

from hfkit.runtime import run_recipe
from tests.conftest import write_tiny_model, write_toy_tsv
from tests.recipes.test_classify_recipe import load_recipe


@pytest.fixture
def classify(tmp_path, tiny_tokenizer, capsys):
    """Run recipes/classify.py's main as `__main__` does; returns (exit code, stdout, stderr)."""
    model = write_tiny_model(tmp_path / "tiny", tiny_tokenizer)
    other_model = write_tiny_model(tmp_path / "tiny2", tiny_tokenizer)
    train = write_toy_tsv(tmp_path / "train.tsv", 64, seed=1)
    recipe = load_recipe("classify")

    def run(*extra: str, model_dir=model):
        argv = [
            "--model_name_or_path", str(model_dir), "--train_file", str(train), "--text_column", "sentence",
            "--label_column", "sentiment", "--validation_split", "0.25", "--output_dir", str(tmp_path / "run"),
            "--use_cpu", "true", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
            "--eval_strategy", "no", "--per_device_train_batch_size", "8", "--disable_tqdm", "true",
            "--report_to", "none", "--keep_checkpoints", "true", *extra,
        ]  # fmt: skip
        try:
            run_recipe(recipe.main, argv)
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    run.out, run.train, run.other_model = tmp_path / "run", train, other_model
    return run


def test_run_json_records_settings_and_data_digest(classify):
    code, _, err = classify("--learning_rate", "1e-3")
    assert code == 0, err
    record = json.loads((classify.out / "run.json").read_text())
    assert record["finished"] is True and record["hfkit_version"]
    assert record["config"]["learning_rate"] == 1e-3 and record["config"]["max_steps"] == 4
    assert len(record["data_files"]["train_file"]["sha256"]) == 64


def test_finished_run_says_so_instead_of_training_zero_steps(classify):
    assert classify("--learning_rate", "1e-3")[0] == 0
    report = (classify.out / "eval_report.json").read_text()
    code, out, err = classify("--learning_rate", "1e-3", "--logging_steps", "1")  # logging does not count
    assert code == 0
    assert "finished with the same settings: nothing to train" in out
    assert "--overwrite_output_dir" in out
    assert "Evaluation report" not in out and (classify.out / "eval_report.json").read_text() == report


def test_other_settings_are_refused_naming_each_change_and_the_ways_forward(classify):
    """Issue 13's `--max_steps 5` on a finished output_dir trained 0 steps and printed the old report."""
    assert classify("--learning_rate", "1e-3")[0] == 0
    code, out, err = classify("--learning_rate", "2e-5", "--max_steps", "5")
    assert code == 2 and "Traceback" not in err
    assert "learning_rate: 0.001 -> 2e-05" in err and "max_steps: 4 -> 5" in err
    assert "new output_dir" in err and "--overwrite_output_dir true" in err


def test_changed_data_or_model_is_refused(classify):
    assert classify()[0] == 0
    code, _, err = classify(model_dir=classify.other_model)
    assert code == 2 and "model_name_or_path" in err
    classify.train.write_text(classify.train.read_text().replace("good", "bad", 1))
    code, _, err = classify()
    assert code == 2 and "train_file" in err and "contents differ" in err


def test_interrupted_run_with_same_settings_resumes(classify, caplog):
    assert classify()[0] == 0
    run_json = classify.out / "run.json"
    record = json.loads(run_json.read_text())
    record["finished"] = False  # as if killed after its last checkpoint
    run_json.write_text(json.dumps(record))
    with caplog.at_level(logging.INFO, logger="hfkit"):
        code, out, err = classify()
    assert code == 0, err
    assert "resuming from" in caplog.text and json.loads(run_json.read_text())["finished"] is True


def test_overwrite_output_dir_starts_afresh(classify, caplog):
    assert classify("--learning_rate", "1e-3", "--max_steps", "6")[0] == 0
    with caplog.at_level(logging.INFO, logger="hfkit"):
        code, _, err = classify("--learning_rate", "2e-5", "--overwrite_output_dir", "true")
    assert code == 0, err
    assert "resuming from" not in caplog.text and "deleted checkpoint-6" in caplog.text
    record = json.loads((classify.out / "run.json").read_text())
    assert record["config"]["learning_rate"] == 2e-5 and record["finished"] is True
    assert sorted(p.name for p in classify.out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_output_dir_that_is_a_file_is_one_message(classify):
    classify.out.write_text("not a folder")
    code, _, err = classify()
    assert code == 2 and "is a file" in err and "Traceback" not in err


def test_full_disk_at_start_is_one_message(classify, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr("hfkit.runtime._write_json_atomic", full)
    code, _, err = classify()
    assert code == 2 and "no space left on the disk of output_dir" in err and "Traceback" not in err


def test_run_that_failed_before_any_checkpoint_takes_new_settings(classify):
    """Fixing a bad setting after a failed start is not 'other settings': nothing of that run was saved."""
    code, _, err = classify(model_dir=classify.out.parent / "no" / "such" / "model")
    assert code == 2 and not list(classify.out.glob("checkpoint-*"))
    code, _, err = classify()
    assert code == 0, err


def test_output_dir_in_use_by_another_run_is_refused(classify):
    """The same command started twice (two terminals) would mix two runs' checkpoints in one folder."""
    classify.out.mkdir()
    with open(classify.out / "_run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the other, still running, process holds
        code, _, err = classify()
    assert code == 2 and "in use by another run" in err and not list(classify.out.glob("checkpoint-*"))
    assert classify()[0] == 0  # once it has ended, the folder is free
