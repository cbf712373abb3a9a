"""recipes/clm.py with tiny Llama models: 2-process fine-tune, distillation from a cached teacher, LoRA, configs."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from hfkit.data.lm import LMDataCollator
from hfkit.errors import UserInputError
from hfkit.generation import teacher_nll_of_samples
from hfkit.parsing import load_yaml_config, parse_args
from hfkit.student import student_from_teacher
from tests.conftest import REPO
from tests.recipes.test_classify_recipe import load_recipe
from tests.unit.data.test_lm import WORDS, tiny_llama, word_tokenizer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
LINES = ["the cat sat on the mat", "w1 w2 w3 w4 w5", "hello world the cat", "question w6 answer w7 w8"]


# Tiny models: one thread is faster than several and is not slowed down by other jobs (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def write_tiny_lm(folder, layers: int = 2, seed: int = 0):
    """A random tiny Llama and its word-level tokenizer, saved as recipes load them."""
    tiny_llama(layers=layers, seed=seed).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def setup(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(LINES * 15) + "\n")  # one document of 286 tokens: 17 blocks of 16
    return tmp_path, text


def run_args(train, out, *extra) -> list[str]:
    return [
        "--train_file",
        str(train),
        "--block_size",
        "16",
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--use_cpu",
        "true",
        *extra,
    ]


def held_out_perplexity(model, rows) -> float:
    """exp(mean NLL per predicted token) of a causal LM, one unpadded row at a time, with torch ops only."""
    nll = count = 0.0
    with torch.no_grad():
        for row in rows:
            ids, labels = torch.tensor([row["input_ids"]]), torch.tensor(row["labels"][1:])
            logits = model.eval()(input_ids=ids).logits[0, :-1]
            keep = labels != -100
            nll += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
            count += keep.sum().item()
    return math.exp(nll / count)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_launch_fine_tunes_saves_and_reports(setup):
    tmp, text = setup
    model_dir = write_tiny_lm(tmp / "tiny")
    out = tmp / "run"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "hfkit" / "accelerate_configs" / "cpu_ddp.yaml"),
        "--main_process_port",
        str(free_port()),
        str(REPO / "recipes" / "clm.py"),
        "--model_name_or_path",
        str(model_dir),
        *run_args(text, out),
        "--log_level", "info",  # Trainer's own set-up lines (the global batch size) are INFO
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # Two gloo processes of 4 rows each: one student, a global batch of 8.
    assert (
        "Total train batch size (w. parallel, distributed & accumulation) = 8"
        in result.stdout + result.stderr
    )
    assert "Held-out perplexity" in result.stdout and "model after training" in result.stdout

    report = json.loads((out / "clm_report.json").read_text())
    assert report["train_steps"] == 2 and report["distillation"] is None
    assert report["eval_examples"] >= 1 and report["eval_tokens"] == report["eval_examples"] * 15
    ppl = report["perplexity"]
    assert (
        1 < ppl["after"] < ppl["before"] < 100
    )  # random start ~ vocabulary size 56; 2 steps at lr 1e-3 help
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and (out / "tokenizer.json").exists()


def test_distillation_from_cached_teacher_top_k_into_a_layer_subset(setup, caplog):
    tmp, text = setup
    teacher = write_tiny_lm(tmp / "teacher", layers=4, seed=1)
    clm = load_recipe("clm")
    distill = [
        "--teacher_name_or_path",
        str(teacher),
        "--student_layers",
        "0",
        "2",
        "--teacher_topk",
        "8",
        "--teacher_logits_cache",
        str(tmp / "cache"),
        "--divergence",
        "reverse_kl",
        "--alpha",
        "0.7",
    ]
    with caplog.at_level(logging.INFO, logger="hfkit"):
        trainer = clm.main(run_args(text, tmp / "student", *distill))
    assert "teacher top-k cache built" in caplog.text
    assert "loss_kd" in next(e for e in trainer.state.log_history if "loss" in e)
    report = json.loads((tmp / "student" / "clm_report.json").read_text())
    assert report["distillation"] == {"divergence": "reverse_kl", "alpha": 0.7, "temperature": 1.0,
                                      "jsd_beta": 0.5, "teacher_topk": 8, "lmbda": 0.0, "seq_kd": False,
                                      "prompt_tokens": 64, "max_new_tokens": 64,
                                      "generation_temperature": 1.0}  # fmt: skip
    assert report["parameters"]["total"] < report["teacher_parameters"]
    # Each perplexity is exp(mean NLL) of its own model on the same held-out blocks: the teacher's of the
    # teacher, "before" of the untrained student (teacher layers 0 and 2). Random tiny models are all near
    # uniform, but the two differ by ~40x the tolerance, so scoring the wrong model fails.
    teacher_model = AutoModelForCausalLM.from_pretrained(teacher)
    ppl = report["perplexity"]
    assert ppl["teacher"] == pytest.approx(held_out_perplexity(teacher_model, trainer.eval_dataset), rel=1e-5)
    untrained = student_from_teacher(teacher_model, [0, 2])
    assert ppl["before"] == pytest.approx(held_out_perplexity(untrained, trainer.eval_dataset), rel=1e-5)
    assert ppl["teacher"] != pytest.approx(ppl["before"], rel=1e-4)
    student = AutoModelForCausalLM.from_pretrained(tmp / "student")
    assert student.config.num_hidden_layers == 2
    # The teacher's NLL of the student's own samples, before and after: the saved student, rescored, gives "after".
    samples = report["samples"]
    rows = [trainer.eval_dataset[i] for i in range(min(32, len(trainer.eval_dataset)))]
    batch = LMDataCollator(pad_token_id=0)(rows)
    again = teacher_nll_of_samples(student, teacher_model, batch, 64, 64, 0, [3], seed=42)
    assert samples["after"] == pytest.approx(again, rel=1e-5)
    assert samples["before"]["teacher_nll"] != pytest.approx(samples["after"]["teacher_nll"], rel=1e-4)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hfkit"):
        clm.main(run_args(text, tmp / "student2", *distill))
    assert "teacher top-k cache hit" in caplog.text


def test_lora_run_saves_a_merged_model_or_the_adapter(setup):
    tmp, text = setup
    model_dir = write_tiny_lm(tmp / "tiny")
    clm = load_recipe("clm")
    lora = ["--model_name_or_path", str(model_dir), "--use_lora", "true", "--lora_r", "4",
            "--lora_target_modules", "q_proj", "v_proj"]  # fmt: skip
    trainer = clm.main(run_args(text, tmp / "lora", *lora))
    assert json.loads((tmp / "lora" / "clm_report.json").read_text())["lora"] is True
    assert trainer.param_counts["trainable"] < trainer.param_counts["total"] / 10
    # Default merge_on_save: a plain model that computes what the trained adapter model computes.
    assert not (tmp / "lora" / "adapter_model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp / "lora").eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, trainer.model.eval()(ids).logits, rtol=1e-5, atol=1e-5)

    clm.main(run_args(text, tmp / "adapter", *lora, "--merge_on_save", "false"))
    assert (tmp / "adapter" / "adapter_model.safetensors").exists()


def test_bad_arguments_say_what_to_change(setup):
    tmp, text = setup
    clm = load_recipe("clm")
    with pytest.raises(ValueError, match="no student: with teacher_name_or_path"):
        clm.main(run_args(text, tmp / "x", "--teacher_name_or_path", "somewhere"))
    model_dir = write_tiny_lm(tmp / "tiny")
    # A student whose tokenizer maps the same number of tokens to other ids: caught before any teacher pass.
    other = tmp / "other"
    tiny_llama().save_pretrained(other)
    word_tokenizer([f"v{i}" for i in range(49)]).save_pretrained(other)
    with pytest.raises(ValueError, match="tokenizers differ"):
        clm.main(
            run_args(
                text,
                tmp / "x",
                "--model_name_or_path",
                str(other),
                "--teacher_name_or_path",
                str(model_dir),
                "--teacher_topk",
                "4",
                "--teacher_logits_cache",
                str(tmp / "cache"),
            )
        )
    assert not (tmp / "cache").exists()
    with pytest.raises(ValueError, match="block_size=130 exceeds the model's max_position_embeddings=128"):
        clm.main(run_args(text, tmp / "x", "--model_name_or_path", str(model_dir), "--block_size", "130"))


def test_shipped_configs_compare_distillation_with_ce_on_equal_terms(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    clm = load_recipe("clm")
    parsed = {
        name: parse_args(
            clm.ARG_TYPES, ["--config", f"recipes/configs/clm/{name}.yaml", "--output_dir", str(tmp_path)]
        )
        for name in ("smollm2_shakespeare", "smollm2_distill_l10", "smollm2_ce_l10")
    }
    model, _, data, config, _ = parsed["smollm2_shakespeare"]
    assert model.model_name_or_path == "models/smollm2-135m" and config.block_size == 256
    assert (
        data.train_file.endswith("shared/data/tinyshakespeare/input.txt") and 100 <= config.max_steps <= 200
    )
    (d_model, _, d_data, d_config, _), (c_model, _, c_data, c_config, _) = (
        parsed["smollm2_distill_l10"],
        parsed["smollm2_ce_l10"],
    )
    assert d_model.student_layers == c_model.student_layers == list(range(0, 30, 3))
    # Both start from the fine-tuned model the first config writes.
    tuned = load_yaml_config("recipes/configs/clm/smollm2_shakespeare.yaml")["output_dir"]
    assert d_model.teacher_name_or_path == c_model.model_name_or_path == tuned
    assert c_model.teacher_name_or_path is None
    for key in ("max_steps", "learning_rate", "per_device_train_batch_size", "block_size", "seed"):
        assert getattr(d_config, key) == getattr(c_config, key), key
    assert vars(d_data) == vars(c_data)


def test_cross_tokenizer_distillation_from_a_config_key(setup):
    """divergence uld: a teacher of another vocabulary trains the student; its perplexity (other tokens) is not
    put beside the student's."""
    tmp, text = setup
    teacher_tokenizer = word_tokenizer(list(reversed(WORDS)) + ["extra", "words"])
    tiny_llama(vocab_size=len(teacher_tokenizer), layers=3, seed=1).save_pretrained(tmp / "teacher")
    teacher_tokenizer.save_pretrained(tmp / "teacher")
    student = write_tiny_lm(tmp / "student_base")
    clm = load_recipe("clm")
    args = ["--model_name_or_path", str(student), "--teacher_name_or_path", str(tmp / "teacher"),
            "--divergence", "uld", "--alpha", "0.5"]  # fmt: skip
    trainer = clm.main(run_args(text, tmp / "out", *args))
    logged = next(e for e in trainer.state.log_history if "loss_kd" in e)
    assert logged["loss_kd"] > 0
    report = json.loads((tmp / "out" / "clm_report.json").read_text())
    assert report["distillation"]["divergence"] == "uld" and report["perplexity"]["teacher"] is None
    # Without uld the same pair is refused up front.
    with pytest.raises(UserInputError, match="vocabulary sizes differ"):
        clm.main(run_args(text, tmp / "out2", *args[:-4]))
