"""recipes/generate.py as users run it: a subprocess on a tiny saved Llama writes the completions jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from hfkit.generation import GenerateArguments, generate
from hfkit.modeling import load_causal_lm, load_causal_lm_tokenizer
from hfkit.parsing import ConfigError
from tests.conftest import REPO
from tests.recipes.test_classify_recipe import load_recipe
from tests.unit.test_generation import TEMPLATE, make_model, make_tokenizer

RECIPE = REPO / "recipes" / "generate.py"


@pytest.fixture
def tiny_lm(tmp_path):
    """A random tiny Llama and its word-level tokenizer (with a chat template) saved as a model folder."""
    folder = tmp_path / "tiny-llama"
    tokenizer = make_tokenizer(chat_template=TEMPLATE)
    make_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_recipe_subprocess_writes_completions_jsonl(tmp_path, tiny_lm):
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text('{"prompt": "w3 w4 w5"}\n{"prompt": "w6"}\n', encoding="utf-8")
    out = tmp_path / "out" / "completions.jsonl"
    cmd = [
        sys.executable, str(RECIPE), "--model_name_or_path", str(tiny_lm),
        "--prompt", "w1 w2", "--prompts_file", str(prompts_file),
        "--max_new_tokens", "5", "--batch_size", "2", "--output_file", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in rows] == ["w1 w2", "w3 w4 w5", "w6"]  # command line first, then the file
    # Greedy: the same completions as the Python API on the same folder, each of 5 words.
    args = GenerateArguments(model_name_or_path=str(tiny_lm), prompt=["x"], max_new_tokens=5)
    model, tokenizer = load_causal_lm(str(tiny_lm)), load_causal_lm_tokenizer(str(tiny_lm))
    expected = generate(model, tokenizer, [r["prompt"] for r in rows], args)
    assert [r["completion"] for r in rows] == expected
    assert all(len(c.split()) <= 5 for c in expected) and any(expected)
    assert f">>> w6\n{expected[2]}" in result.stdout


def test_recipe_missing_model_says_how_to_get_it(tmp_path):
    recipe = load_recipe("generate")
    with pytest.raises(FileNotFoundError, match="scripts/get_smollm2.sh"):
        recipe.main(["--model_name_or_path", str(tmp_path / "smollm2-135m"), "--prompt", "hi"])


def test_recipe_reads_prompts_before_loading_the_model(tmp_path):
    recipe = load_recipe("generate")
    with pytest.raises(FileNotFoundError, match="prompts file not found"):
        recipe.main(["--model_name_or_path", str(tmp_path / "absent"), "--prompts_file", "nope.txt"])


def test_recipe_rejects_unknown_key_with_suggestion():
    recipe = load_recipe("generate")
    with pytest.raises(ConfigError, match="max_new_token.*did you mean: max_new_tokens"):
        recipe.main(["--model_name_or_path", "m", "--prompt", "a", "--max_new_token", "3"])


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_decodes_in_bf16_only_where_the_cpu_has_it(tiny_lm, monkeypatch, native):
    """--dtype auto: bf16 on a CPU with native bf16 (training's auto rule), the checkpoint's float32 elsewhere;
    an explicit --dtype always wins. Same tokens count either way (the greedy run completes)."""
    recipe = load_recipe("generate")
    monkeypatch.setattr(recipe, "native_bf16", lambda on_cpu: native)
    loaded = []
    real = recipe.load_causal_lm
    monkeypatch.setattr(recipe, "load_causal_lm", lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    common = [
        "--model_name_or_path",
        str(tiny_lm),
        "--prompt",
        "w1 w2",
        "--max_new_tokens",
        "3",
        "--device",
        "cpu",
    ]
    recipe.main(common)
    assert next(loaded[-1].parameters()).dtype == (torch.bfloat16 if native else torch.float32)
    recipe.main([*common, "--dtype", "float32"])
    assert next(loaded[-1].parameters()).dtype == torch.float32
    assert recipe.decode_dtype("auto", "cuda") == "auto"  # a GPU keeps the checkpoint's dtype
