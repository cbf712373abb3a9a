"""`hfkit label` (an LLM labels text) and `hfkit distill` trained from those labels, on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from hfkit.errors import UserInputError
from hfkit.recipes import distill, label
from hfkit.teacher_cache.llm import LabelPrompt, LLMLabeller
from tests.conftest import FILLER, write_tiny_model, write_toy_tsv
from tests.unit.data.test_lm import tiny_llama, word_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT_WORDS = ["review", "is", "it", "positive", "negative", "good", "bad"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    tokenizer = word_tokenizer(PROMPT_WORDS + FILLER)
    # initializer_range 0.2: a random LLM whose choices depend on the text (both classes occur)
    llm = tiny_llama(vocab_size=len(tokenizer), seed=4, initializer_range=0.2)
    llm.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return {
        "root": root,
        "llm": root / "llm",
        "train": write_toy_tsv(root / "train.tsv", 40, seed=1),
        "validation": write_toy_tsv(root / "validation.tsv", 12, seed=2),
    }


def label_args(files, out, *extra) -> list[str]:
    return [
        "--model_name_or_path", str(files["llm"]),
        "--prompt_template", "review {text} is it positive or negative",
        "--label_words", "negative", "positive", "--class_names", "neg", "pos",
        "--train_file", str(files["train"]), "--validation_file", str(files["validation"]),
        "--text_column", "sentence", "--label_column", "sentiment",
        "--batch_size", "4", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def test_label_writes_the_llms_logits_and_distill_trains_from_them(files, tmp_path, tiny_tokenizer):
    out = tmp_path / "labels"
    report = label.main(label_args(files, out))
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]) == {"sentence", "sentiment", "teacher_logits", "gold_sentiment"}
    logits = np.array([r["teacher_logits"] for r in rows])
    # The stored logits are the label words' log-probs; the written label is the larger one's class.
    assert (logits < 0).all() and np.exp(logits).sum(1).max() < 1
    assert [r["sentiment"] for r in rows] == [["neg", "pos"][i] for i in logits.argmax(1)]
    gold = [r["gold_sentiment"] for r in rows]
    assert gold == [line.split("\t")[1] for line in files["train"].read_text().splitlines()[1:]]
    # The validation accuracy is the LLM's choice against the validation labels, recomputed here.
    lines = [line.split("\t") for line in files["validation"].read_text().splitlines()[1:]]
    labeller = LLMLabeller(
        AutoModelForCausalLM.from_pretrained(files["llm"]), AutoTokenizer.from_pretrained(files["llm"]),
        LabelPrompt("review {text} is it positive or negative", ["negative", "positive"]),
    )  # fmt: skip
    choices = labeller.score([text for text, _ in lines]).argmax(1)
    expected = np.mean([["neg", "pos"][c] == gold for c, (_, gold) in zip(choices, lines)])
    split = report.data["splits"]["validation"]
    assert split["rows"] == 12 and split["accuracy"] == pytest.approx(expected)
    assert (out / "label_report.md").exists()
    # A finished labelling is not overwritten unless asked.
    with pytest.raises(UserInputError, match="already holds labels"):
        label.main(label_args(files, out))

    # The student learns from the LLM's logits: no teacher named, the cached column is the teacher.
    student = write_tiny_model(tmp_path / "student", tiny_tokenizer)
    common = [
        "--student_name_or_path", str(student), "--train_file", str(out / "train.jsonl"),
        "--validation_file", str(files["validation"]), "--text_column", "sentence", "--label_column", "sentiment",
        "--max_length", "32", "--use_cpu", "true", "--report_to", "none",
        "--max_steps", "3", "--per_device_train_batch_size", "8", "--logging_steps", "1",
        "--save_strategy", "no", "--temperature", "2.0", "--alpha", "0.5",
    ]  # fmt: skip
    trainer = distill.main([*common, "--output_dir", str(tmp_path / "student_out")])
    assert trainer.teacher_model is None
    logged = next(e for e in trainer.state.log_history if "loss_soft" in e)
    assert logged["loss_soft"] > 0
    # The soft targets it trained on are the LLM's, row for row (DistillTrainer's own tests cover the loss).
    np.testing.assert_allclose(np.array(trainer.train_dataset["teacher_logits"]), logits, rtol=1e-6)
    report = json.loads((tmp_path / "student_out" / "distill_report.json").read_text())
    assert "cached teacher logits" in report["teacher"]


def test_distill_without_teacher_needs_the_column(files, tmp_path, tiny_tokenizer):
    student = write_tiny_model(tmp_path / "student", tiny_tokenizer)
    with pytest.raises(UserInputError, match="no 'teacher_logits' column"):
        distill.main([
            "--student_name_or_path", str(student), "--train_file", str(files["train"]),
            "--validation_file", str(files["validation"]), "--text_column", "sentence",
            "--label_column", "sentiment", "--use_cpu", "true", "--report_to", "none",
            "--output_dir", str(tmp_path / "out"),
        ])  # fmt: skip
