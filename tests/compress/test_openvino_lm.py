"""OpenVINO decoding of causal LMs: export -> greedy tokens equal transformers', int8 weights, the recipe, refusals.

Tiny random Llama and Qwen2 models (4 attention heads over 2 key/value heads, so grouped-query attention is
exercised) with a 47-word tokenizer; each folder is exported once per module.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

from hfkit.cli import main as cli
from hfkit.compress.openvino_lm import _Step, export_openvino_lm
from hfkit.errors import UserInputError
from hfkit.generation import GenerateArguments, generate_details
from hfkit.hub.upload import TOKENIZER_FILES, prepare_upload_folder
from hfkit.io import (
    OPENVINO_FILE,
    OPENVINO_LM_FIELD,
    OPENVINO_WEIGHTS,
    OpenVinoCausalLM,
    is_openvino_lm,
    load_model,
)
from tests.conftest import write_tiny_student
from tests.recipes.test_classify_recipe import load_recipe
from tests.unit.test_generation import make_tokenizer

ov = pytest.importorskip(
    "openvino", reason="OpenVINO decoding needs openvino (pip install 'hfkit[openvino]')"
)
pytest.importorskip("nncf", reason="int8 weights need nncf (pip install 'hfkit[openvino]')")

PROMPTS = ["w1 w2 w3", "w4", "w5 w6 w7 w8 w9 w10", "w11 w12"]


def _tiny_config(kind: str, tokenizer):
    common = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=None,
    )  # fmt: skip
    return LlamaConfig(**common) if kind == "llama" else Qwen2Config(**common)


def _export_tiny(kind: str, root: Path, int8: bool = True) -> tuple[Path, Path, Path | None, object]:
    """(transformers folder, float32 OpenVINO folder, int8-weights OpenVINO folder or None, tokenizer)."""
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    # initializer_range 0.2: a random tiny LM with BERT's 0.02 gives nearly flat logits, whose argmax any
    # rounding flips; these logits differ enough between tokens that greedy decoding is a real check.
    config = _tiny_config(kind, tokenizer)
    config.initializer_range = 0.2
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    float_dir = export_openvino_lm(root / "model", root / "ov", tokenizer=tokenizer)
    int8_dir = (
        export_openvino_lm(root / "model", root / "ov_int8", int8_weights=True, tokenizer=tokenizer)
        if int8
        else None
    )
    return root / "model", Path(float_dir), Path(int8_dir) if int8_dir else None, tokenizer


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def exported(request, tmp_path_factory):
    return _export_tiny(request.param, tmp_path_factory.mktemp(f"openvino_lm_{request.param}"))


@pytest.fixture(scope="module")
def llama_exported(tmp_path_factory):
    """The Llama folders alone, for the recipe, which loads the tokenizer from the folder: beside a qwen2 config
    AutoTokenizer picks Qwen2's BPE class for this word-level vocabulary."""
    return _export_tiny("llama", tmp_path_factory.mktemp("openvino_lm_recipe"), int8=False)


def _details(model, tokenizer, **kw):
    args = GenerateArguments(
        model_name_or_path="unused", prompt=["x"], chat_template=False, max_new_tokens=12, **kw
    )
    return generate_details(model, tokenizer, PROMPTS, args)


def test_float_ir_decodes_the_same_greedy_tokens_as_transformers(exported):
    model_dir, float_dir, _, tokenizer = exported
    reference = AutoModelForCausalLM.from_pretrained(model_dir)
    expected = _details(reference, tokenizer, batch_size=4)  # left-padded batch through transformers
    got = _details(OpenVinoCausalLM(float_dir), tokenizer, batch_size=4)
    assert [g.token_ids for g in got] == [e.token_ids for e in expected]
    # Every row runs to the limit or ends at the tokenizer's eos (the same rule for both).
    assert all(len(g.token_ids) == 12 or g.token_ids[-1] == tokenizer.eos_token_id for g in got)
    assert len({tuple(g.token_ids) for g in got}) > 1  # the prompts matter


class _CountingIR:
    """A compiled IR whose infer requests count their calls (one call per decoding step when rows go together)."""

    def __init__(self, compiled):
        self.compiled, self.calls = compiled, 0

    def create_infer_request(self):
        request, outer = self.compiled.create_infer_request(), self

        class Counting:
            def infer(self, feed):
                outer.calls += 1
                return request.infer(feed)

        return Counting()


def test_a_padded_batch_decodes_together_with_each_rows_own_tokens(exported):
    _, float_dir, _, tokenizer = exported
    model = OpenVinoCausalLM(float_dir)
    alone = [g.token_ids for g in _details(model, tokenizer, batch_size=1)]
    model.compiled = counted = _CountingIR(model.compiled)
    together = [g.token_ids for g in _details(model, tokenizer, batch_size=4)]
    assert together == alone  # left padding changes no row's tokens
    assert counted.calls == max(len(t) for t in alone)  # one IR call per step for all four rows, not per row


def test_load_model_returns_the_openvino_decoder_and_its_tokenizer(llama_exported):
    _, float_dir, _, tokenizer = llama_exported
    model, loaded_tokenizer = load_model(float_dir)
    assert isinstance(model, OpenVinoCausalLM) and loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert [g.token_ids for g in _details(model, loaded_tokenizer)] == [
        g.token_ids for g in _details(OpenVinoCausalLM(float_dir), tokenizer)
    ]
    with pytest.raises(UserInputError, match="OpenVINO causal LM; it cannot load as text-classification"):
        load_model(float_dir, task="text-classification")


def test_prompt_logits_match_transformers_at_every_position_and_decoding_scores_only_the_last(exported):
    model_dir, float_dir, _, tokenizer = exported
    ids = [tokenizer(PROMPTS[2])["input_ids"]]
    reference = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits.numpy()
    model = OpenVinoCausalLM(float_dir)
    np.testing.assert_allclose(model.prompt_logits(ids), expected, atol=1e-4)
    # The prompt pass of decoding asks for the last position only: the IR returns one row of logits.
    request = model.compiled.create_infer_request()
    last = np.asarray([len(ids[0]) - 1])
    logits = model._infer(request, np.asarray(ids), np.ones((1, len(ids[0])), dtype=np.int64),
                          np.arange(len(ids[0]))[None], model._empty_cache(1), last)[0]  # fmt: skip
    assert logits.shape == (1, 1, len(tokenizer))
    np.testing.assert_allclose(logits[0, 0], expected[0, -1], atol=1e-4)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_folder_exported_before_scored_positions_still_decodes(exported, tmp_path):
    """Folders from the first export (no `logits_positions` fact: the IR returns every position's logits)."""
    model_dir, float_dir, _, tokenizer = exported

    class EveryPosition(_Step):
        def forward(self, input_ids, attention_mask, position_ids, *past):
            return super().forward(input_ids, attention_mask, position_ids, 0, *past)

    reference = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    example = (torch.tensor([[5, 7]]), torch.ones(1, 5, dtype=torch.long), torch.tensor([[3, 4]]),
               *[torch.zeros(1, 2, 3, 8) for _ in range(4)])  # fmt: skip
    with torch.no_grad():
        old = ov.convert_model(EveryPosition(reference), example_input=example)
    old.reshape({port: [-1, -1] if i < 3 else [-1, 2, -1, 8] for i, port in enumerate(old.inputs)})
    folder = tmp_path / "old"
    shutil.copytree(float_dir, folder)
    ov.save_model(old, folder / OPENVINO_FILE, compress_to_fp16=False)
    config = json.loads((folder / "config.json").read_text())
    del config[OPENVINO_LM_FIELD]["logits_positions"]
    (folder / "config.json").write_text(json.dumps(config))
    assert [g.token_ids for g in _details(OpenVinoCausalLM(folder), tokenizer, batch_size=4)] == [
        g.token_ids for g in _details(OpenVinoCausalLM(float_dir), tokenizer, batch_size=4)
    ]


def test_push_uploads_the_ir_and_a_card_whose_code_decodes_it(llama_exported, tmp_path):
    """`hfkit push` of an exported causal LM: the IR's .xml + .bin hold the weights (no safetensors file)."""
    model_dir, float_dir, _, tokenizer = llama_exported
    push = load_recipe("push")
    try:
        out = push.main(["--model_dir", str(float_dir), "--out_dir", str(tmp_path / "upload"), "--repo_id",
                         "me/tiny-ov-lm", "--dry_run", "true"])  # fmt: skip
    finally:
        logging.getLogger("hfkit").setLevel(logging.NOTSET)  # main() raised it to INFO for its listing
    tokenizer_files = {p.name for p in float_dir.iterdir() if p.name in TOKENIZER_FILES}
    assert {p.name for p in out.iterdir()} == {
        OPENVINO_FILE, OPENVINO_WEIGHTS, "config.json", "generation_config.json", "README.md", *tokenizer_files
    }  # fmt: skip
    card = (out / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["tags"] == ["hfkit", "text-generation", "openvino"]
    assert 'load_model(snapshot_download("me/tiny-ov-lm"))' in card and "safetensors file(s)" not in card
    assert "OpenVINO IR (float32 weights" in card and "OpenVINO IR for CPU decoding (float32 weights)" in card
    parameters = AutoModelForCausalLM.from_pretrained(model_dir).num_parameters()
    assert f"| Parameters | {parameters:,} |" in card
    # The card's usage line (generate(**inputs, max_new_tokens=...)) runs on what would be uploaded.
    uploaded, uploaded_tokenizer = load_model(out)
    inputs = uploaded_tokenizer(PROMPTS[0], return_tensors="pt")
    assert "model.generate(**inputs, max_new_tokens=30)" in card
    got = uploaded.generate(**inputs, max_new_tokens=5)
    expected = AutoModelForCausalLM.from_pretrained(model_dir).generate(
        **inputs, max_new_tokens=5, do_sample=False
    )
    assert got.tolist() == expected.tolist()

    broken = tmp_path / "broken"
    shutil.copytree(float_dir, broken)
    (broken / OPENVINO_WEIGHTS).unlink()
    with pytest.raises(
        UserInputError, match=f"causal-LM folder without its {OPENVINO_WEIGHTS}: export it again"
    ):
        prepare_upload_folder(broken, tmp_path / "upload2")
    assert not (tmp_path / "upload2").exists()


def test_the_card_of_int8_weights_says_so(exported, tmp_path):
    _, _, int8_dir, _ = exported
    out = prepare_upload_folder(int8_dir, tmp_path / "upload", repo_id="me/tiny-ov-lm-int8")
    card = (out / "README.md").read_text()
    assert "OpenVINO IR for CPU decoding (int8 weights)" in card and "(OpenVINO IR, int8 weights)" in card
    tags = yaml.safe_load(card.split("---")[1])["tags"]
    assert tags == ["hfkit", "text-generation", "quantization", "8-bit", "openvino"]


def test_folder_records_what_it_holds_and_is_recognised(exported):
    model_dir, float_dir, int8_dir, _ = exported
    assert is_openvino_lm(float_dir) and is_openvino_lm(int8_dir) and not is_openvino_lm(model_dir)
    facts = json.loads((float_dir / "config.json").read_text())[OPENVINO_LM_FIELD]
    reference = AutoModelForCausalLM.from_pretrained(model_dir)
    assert facts["parameters"] == reference.num_parameters()
    assert (facts["layers"], facts["key_value_heads"], facts["head_dim"]) == (2, 2, 8)
    assert (float_dir / "tokenizer.json").is_file() and (float_dir / OPENVINO_FILE).is_file()


def test_int8_weights_are_int8_and_close_to_float(exported):
    _, float_dir, int8_dir, tokenizer = exported
    core = ov.Core()
    weights = {}
    for name, folder in (("float", float_dir), ("int8", int8_dir)):
        model = core.read_model(folder / OPENVINO_FILE)
        weights[name] = [
            op.get_element_type()
            for op in model.get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_output_partial_shape(0).rank.get_length() == 2
        ]
    assert ov.Type.u8 not in weights["float"]
    assert weights["int8"].count(ov.Type.u8) >= 2 * 7  # every layer's 7 matrices (and the LM head)
    assert (int8_dir / "openvino_model.bin").stat().st_size < 0.5 * (
        float_dir / "openvino_model.bin"
    ).stat().st_size

    # First-step logits of one prompt: int8 weights move them by a fraction of their spread, not more.
    ids = [tokenizer(PROMPTS[2])["input_ids"]]
    logits = {name: OpenVinoCausalLM(folder).prompt_logits(ids)[0, -1] for name, folder in
              (("float", float_dir), ("int8", int8_dir))}  # fmt: skip
    spread = logits["float"].max() - logits["float"].min()
    assert 0 < np.abs(logits["int8"] - logits["float"]).max() < 0.05 * spread


def test_eos_stops_a_row_and_min_new_tokens_holds_it_off(exported):
    _, float_dir, _, tokenizer = exported
    model = OpenVinoCausalLM(float_dir)
    batch = tokenizer([PROMPTS[0]], return_tensors="pt")
    first = model.generate(**batch, generation_config=GenerationConfig(max_new_tokens=5))[0, 3].item()
    stop = GenerationConfig(max_new_tokens=5, eos_token_id=first, pad_token_id=tokenizer.pad_token_id)
    assert model.generate(**batch, generation_config=stop)[0, 3:].tolist() == [first]
    held = GenerationConfig(max_new_tokens=5, min_new_tokens=3, eos_token_id=first)
    new = model.generate(**batch, generation_config=held)[0, 3:].tolist()
    assert len(new) >= 3 and first not in new[:3]


def test_generate_recipe_decodes_an_openvino_folder_like_its_source(llama_exported):
    model_dir, float_dir, _, _ = llama_exported
    recipe = load_recipe("generate")
    common = [
        "--prompt",
        PROMPTS[0],
        "--prompt",
        PROMPTS[2],
        "--max_new_tokens",
        "6",
        "--chat_template",
        "false",
    ]
    assert recipe.main(["--model_name_or_path", str(float_dir), *common]) == recipe.main(
        ["--model_name_or_path", str(model_dir), *common]
    )


@pytest.mark.parametrize(
    "flag", [["--do_sample", "true"], ["--repetition_penalty", "1.3"], ["--static_cache", "true"]]
)
def test_generate_recipe_refuses_what_greedy_openvino_decoding_cannot_do(llama_exported, flag):
    _, float_dir, _, _ = llama_exported
    recipe = load_recipe("generate")
    with pytest.raises(UserInputError, match=f"OpenVINO folder.*drop {flag[0]}"):
        recipe.main(["--model_name_or_path", str(float_dir), "--prompt", "w1", *flag])


def test_an_empty_prompt_is_refused_with_the_fix(exported):
    _, float_dir, _, _ = exported
    with pytest.raises(UserInputError, match="no tokens"):
        OpenVinoCausalLM(float_dir).generate(input_ids=torch.zeros((1, 0), dtype=torch.long))


def test_assisted_decoding_is_refused_by_the_model_itself(exported):
    _, float_dir, _, tokenizer = exported
    batch = tokenizer([PROMPTS[0]], return_tensors="pt")
    with pytest.raises(UserInputError, match="assistant_model"):
        OpenVinoCausalLM(float_dir).generate(**batch, assistant_model=object())


def test_export_refuses_an_encoder_an_openvino_folder_and_an_existing_output(exported, tmp_path):
    model_dir, float_dir, _, _ = exported
    write_tiny_student(tmp_path / "bert")
    with pytest.raises(UserInputError, match="model types llama, qwen2.*'bert'"):
        export_openvino_lm(tmp_path / "bert", tmp_path / "out")
    with pytest.raises(UserInputError, match="already an OpenVINO folder"):
        export_openvino_lm(float_dir, tmp_path / "out")
    before = (float_dir / OPENVINO_FILE).stat().st_mtime_ns
    with pytest.raises(UserInputError, match="already holds an OpenVINO model"):
        export_openvino_lm(model_dir, float_dir)
    assert (float_dir / OPENVINO_FILE).stat().st_mtime_ns == before  # the deployed model is untouched


def test_export_command_writes_a_folder_generate_decodes_and_refuses_bad_input(
    llama_exported, tmp_path, capsys
):
    model_dir, float_dir, _, _ = llama_exported
    out = tmp_path / "deploy"
    cli(
        ["export", "--model_name_or_path", str(model_dir), "--output_dir", str(out), "--int8_weights", "true"]
    )
    assert f"hfkit generate --model_name_or_path {out}" in capsys.readouterr().out
    assert "int8" in json.loads((out / "config.json").read_text())[OPENVINO_LM_FIELD]["weights"]
    recipe = load_recipe("generate")
    assert recipe.main(["--model_name_or_path", str(out), "--prompt", PROMPTS[0], "--max_new_tokens", "4"])
    for argv, problem in (
        (["--output_dir", str(tmp_path / "x")], "give --model_name_or_path"),
        (
            ["--model_name_or_path", str(model_dir), "--output_dir", str(out)],
            "already holds an OpenVINO model",
        ),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli(["export", *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("error: ") and problem in err, err
