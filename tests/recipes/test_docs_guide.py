"""docs/guide.md's "Your own data, step by step": every YAML file and command it shows, run as written on tiny models.

The YAML blocks are written to the files their first comment names; each `hfkit ...` command runs in that
folder, with only the model paths swapped for tiny random models and a few steps instead of epochs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hfkit.io import load_model
from hfkit.modeling import count_parameters
from tests.conftest import REPO, toy_texts, write_tiny_model
from tests.unit.test_generation import TEMPLATE, make_model, make_tokenizer

SECTION = "## Your own data, step by step"


def guide() -> str:
    page = (REPO / "docs" / "guide.md").read_text()  # README's quick start links to it
    start = page.index(SECTION)
    end = page.index("\n## ", start + len(SECTION))
    return page[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", guide(), flags=re.S)


def commands() -> list[list[str]]:
    """Every `hfkit ...` command of the guide's bash blocks, continuation lines joined."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("hfkit "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


def write_csv(path: Path, n: int, seed: int) -> None:
    texts, labels = toy_texts(n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, ["pos" if y else "neg" for y in labels]))


def test_the_guide_shows_every_step():
    assert [c[0] for c in commands()] == ["classify", "distill", "compress", "push", "generate"]
    assert [b.splitlines()[0] for b in blocks("yaml")] == [
        "# my_teacher.yaml", "# my_student.yaml", "# my_compress.yaml"
    ]  # fmt: skip


def test_every_command_and_config_of_the_guide_runs(tmp_path, tiny_tokenizer):
    for block in blocks("yaml"):
        name = block.splitlines()[0].removeprefix("# ").strip()
        (tmp_path / name).write_text(block)
    write_csv(tmp_path / "data" / "train.csv", 160, seed=1)
    write_csv(tmp_path / "data" / "dev.csv", 40, seed=2)
    tiny = write_tiny_model(tmp_path / "tiny-bert", tiny_tokenizer)
    lm_tokenizer = make_tokenizer(chat_template=TEMPLATE)
    make_model(lm_tokenizer).save_pretrained(tmp_path / "tiny-llama")
    lm_tokenizer.save_pretrained(tmp_path / "tiny-llama")
    steps = ["--max_steps", "4", "--per_device_train_batch_size", "16"]
    swaps = {  # only what a tiny model and a test's time budget need
        "classify": ["--model_name_or_path", str(tiny), *steps],
        "distill": ["--student_name_or_path", str(tiny), "--student_layers", "0", "1", *steps],
        "compress": [],
        "push": [],
        "generate": ["--model_name_or_path", str(tmp_path / "tiny-llama"), "--max_new_tokens", "4"],
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    outputs = {}
    for command in commands():
        result = subprocess.run(
            [sys.executable, "-m", "hfkit", *command, *swaps[command[0]]],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, (command, result.stderr[-3000:])
        outputs[command[0]] = result.stdout
    dev = read_csv(tmp_path / "data" / "dev.csv")

    def check_measured(row: dict, folder: Path):
        """A report row's figures are those of its folder: parameters, weight file, accuracy on dev.csv."""
        model, tokenizer = load_model(folder)
        assert row["parameters"] == count_parameters(model)[0], row["name"]
        assert row["size_mb"] == pytest.approx((folder / "model.safetensors").stat().st_size / 1e6)
        predicted, gold = predict(model, tokenizer, dev)
        assert row["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold)) / len(gold))
        return model, tokenizer

    # classify: the report's confusion matrix is the reloaded teacher's own on dev.csv.
    teacher_report = json.loads((tmp_path / "outputs/my_teacher/eval_report.json").read_text())
    predicted, gold = predict(*load_model(tmp_path / "outputs/my_teacher"), dev)
    assert teacher_report["confusion_matrix"] == confusion(predicted, gold, teacher_report["labels"])

    # distill: one row for the teacher and one for the student, each measured on its own folder.
    distilled = json.loads((tmp_path / "outputs/my_student/distill_report.json").read_text())
    assert [r["name"] for r in distilled["models"]] == ["teacher", "student"]
    for row, folder in zip(distilled["models"], ["my_teacher", "my_student"], strict=True):
        check_measured(row, tmp_path / "outputs" / folder)

    # push (dry run): the student's weights, and a card that states the student's own accuracy.
    pushed = tmp_path / "outputs/my_push"
    assert (pushed / "model.safetensors").read_bytes() == (
        tmp_path / "outputs/my_student/model.safetensors"
    ).read_bytes()
    card = yaml.safe_load((pushed / "README.md").read_text().split("---")[1])
    (result,) = card["model-index"][0]["results"]
    card_metrics = {m["type"]: m["value"] for m in result["metrics"]}
    student_eval = json.loads((tmp_path / "outputs/my_student/eval_report.json").read_text())
    assert card_metrics["accuracy"] == pytest.approx(student_eval["metrics"]["accuracy"])

    # compress: both chains ran, each stage is a row with its own folder, and the figures of that folder.
    compressed = json.loads((tmp_path / "outputs/my_compressed/compression_report.json").read_text())
    rows = compressed["models"]
    assert [(r["name"], r["chain"]) for r in rows] == [
        ("teacher", ""), ("student", ""), ("int8", "int8"), ("trim_vocab", "trim_vocab"),
        ("trim_vocab-int8", "trim_vocab>int8"),
    ]  # fmt: skip
    student = rows[1]
    for row in rows[2:]:
        folder = tmp_path / row["folder"]
        assert folder.parent == tmp_path / "outputs/my_compressed", row["folder"]
        model, tokenizer = check_measured(row, folder)
        int8_weights = [p for p in model.parameters() if p.dtype == torch.int8]
        if row["name"].endswith("int8"):  # 8-bit linear weights: about half the float student's file
            assert int8_weights and row["size_mb"] < 0.6 * student["size_mb"]
        else:
            assert not int8_weights and row["extra"]["vocab_size"] == len(tokenizer)
    assert ">>> What is gravity?" in outputs["generate"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def predict(model, tokenizer, rows: list[dict]) -> tuple[list[str], list[str]]:
    """(predicted, gold) label names of a classifier on the guide's csv rows."""
    with torch.no_grad():
        logits = model(**tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")).logits
    return [model.config.id2label[i] for i in logits.argmax(-1).tolist()], [r["label"] for r in rows]


def confusion(predicted: list[str], gold: list[str], labels: list[str]) -> list[list[int]]:
    """Rows: gold label; columns: predicted label."""
    return [[sum(g == a and p == b for p, g in zip(predicted, gold)) for b in labels] for a in labels]


@pytest.fixture
def tiny_lm_folder(tmp_path):
    tokenizer = make_tokenizer(chat_template=TEMPLATE)
    make_model(tokenizer).save_pretrained(tmp_path / "smollm2")
    tokenizer.save_pretrained(tmp_path / "smollm2")
    return tmp_path / "smollm2"


def test_the_python_generation_example_runs(tiny_lm_folder, capsys):
    (code,) = blocks("python")
    exec(compile(code.replace("models/smollm2-135m", str(tiny_lm_folder)), "docs/guide.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"\[\d+(, \d+)*\] \d+\.\d tokens/s", printed), printed
