"""README's "Your own data, step by step": every YAML file and command it shows, run as written on tiny models.

The YAML blocks are written to the files their first comment names; each `hfkit ...` command runs in that
folder, with only the model paths swapped for tiny random models and a few steps instead of epochs.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, toy_texts, write_tiny_model
from tests.unit.test_generation import TEMPLATE, make_model, make_tokenizer

SECTION = "## Your own data, step by step"


def guide() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(SECTION)
    end = readme.index("\n## ", start + len(SECTION))
    return readme[start:end]


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
    for report in (
        "outputs/my_teacher/eval_report.json",
        "outputs/my_student/distill_report.json",
        "outputs/my_compressed/compression_report.json",
        "outputs/my_push/README.md",
    ):
        assert (tmp_path / report).is_file(), report
    compressed = (tmp_path / "outputs/my_compressed/compression_report.json").read_text()
    assert "trim_vocab" in compressed and "int8" in compressed  # both chains were run and reported
    assert ">>> What is gravity?" in outputs["generate"]


@pytest.fixture
def tiny_lm_folder(tmp_path):
    tokenizer = make_tokenizer(chat_template=TEMPLATE)
    make_model(tokenizer).save_pretrained(tmp_path / "smollm2")
    tokenizer.save_pretrained(tmp_path / "smollm2")
    return tmp_path / "smollm2"


def test_the_python_generation_example_runs(tiny_lm_folder, capsys):
    (code,) = blocks("python")
    exec(compile(code.replace("models/smollm2-135m", str(tiny_lm_folder)), "README guide", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"\[\d+(, \d+)*\] \d+\.\d tokens/s", printed), printed
