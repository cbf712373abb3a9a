"""CPU int8 (ONNX Runtime): export -> reload round trip, logits close to float, the pipeline stage, refusals.

Exporting costs tens of seconds of torch.export tracing, so one module-scoped fixture runs the pipeline chain
``trim_vocab>cpu_int8`` once on a tiny random BERT and the tests read what it wrote.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import onnx
import pytest
import torch
from datasets import Dataset
from transformers import (
    BertForMaskedLM,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from hfkit.compress.cpu_int8 import CpuInt8Arguments, export_cpu_int8
from hfkit.compress.lowrank import LowRankArguments
from hfkit.compress.pipeline import CompressArguments, load_classifier_folder, measure_variant, run_chains
from hfkit.compress.prune import PruneArguments
from hfkit.compress.quantize import QuantizeArguments
from hfkit.compress.trim_vocab import TrimVocabArguments
from hfkit.errors import UserInputError
from hfkit.evaluation import measure_latencies_together
from hfkit.hub.upload import TOKENIZER_FILES
from hfkit.io import CPU_INT8_FIELD, ONNX_FILE, OnnxClassifier, load_model
from hfkit.modeling import count_parameters
from tests.conftest import tiny_bert_config, write_tiny_student
from tests.recipes.test_classify_recipe import load_recipe

TRAIN = [
    "a gripping, beautifully acted thriller.",
    "the plot is thin and the jokes fall flat",
    "an unforgettable performance by the lead actress!",
    "it's neither funny nor moving.",
]
VALIDATION = [
    "the plot is a gripping thriller.",
    "neither funny nor moving, and the jokes fall flat.",
    "thin",
]
LABELS = [1, 0, 0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(float student, its tokenizer, trim result, cpu_int8 result) of the chain trim_vocab>cpu_int8."""
    root = tmp_path_factory.mktemp("cpu_int8")
    student, tokenizer = write_tiny_student(root / "student")
    raw = Dataset.from_dict({"text": VALIDATION, "labels": LABELS})

    def measure(name, chain, model, folder, parameters, model_tokenizer):
        # The recipe's own measurement (accuracy, size on disk, memory), as for the bitsandbytes stages.
        return measure_variant(name, chain, model, model_tokenizer, folder, raw, "text", None, 64,
                               args, parameters)  # fmt: skip

    args = CompressArguments(model_name_or_path=str(root / "student"), chains=["trim_vocab>cpu_int8"])
    trim, int8 = run_chains(
        args, tokenizer, str(root / "out"), measure, PruneArguments(), LowRankArguments(), QuantizeArguments(),
        root_parameters=count_parameters(student)[0], trim_args=TrimVocabArguments(),
        corpus={"train": TRAIN, "validation": VALIDATION}.get, cpu_int8_args=CpuInt8Arguments(),
    )  # fmt: skip
    return student, tokenizer, trim, int8


def test_stage_writes_a_reloadable_onnx_folder_with_the_trimmed_tokenizer(chain):
    _, _, trim, int8 = chain
    assert int8.chain == "trim_vocab>cpu_int8" and int8.folder.endswith("trim_vocab-cpu_int8")
    model, tokenizer = load_model(
        int8.folder
    )  # the one loader, no task given: read from config.architectures
    assert isinstance(model, OnnxClassifier) and not model.training
    assert len(tokenizer) == trim.extra["vocab_size"] < 100  # the trimmed tokenizer travelled with the graph
    facts = json.loads(Path(int8.folder, "config.json").read_text())
    assert facts[CPU_INT8_FIELD]["parameters"] == trim.parameters == int8.parameters
    # Measured like the bitsandbytes stages: accuracy on the rows, size of the graph file, weight bytes.
    with torch.no_grad():
        predicted = model(**tokenizer(VALIDATION, padding=True, return_tensors="pt")).logits.argmax(-1)
    assert int8.accuracy == pytest.approx((predicted == torch.tensor(LABELS)).float().mean().item())
    assert int8.size_mb == pytest.approx(Path(int8.folder, ONNX_FILE).stat().st_size / 1e6)
    assert int8.size_mb < 0.5 * trim.size_mb  # int8 tables: about a quarter of the float safetensors
    assert int8.memory_mb == pytest.approx(facts[CPU_INT8_FIELD]["weight_bytes"] / 1e6)


def test_weights_and_embeddings_are_int8_and_the_head_stays_float(chain):
    _, _, _, int8 = chain
    graph = onnx.load(f"{int8.folder}/{ONNX_FILE}").graph
    ops = [n.op_type for n in graph.node]
    # 2 layers x (q, k, v, attention output, intermediate, output) weight MatMuls run in int8.
    assert ops.count("MatMulInteger") == 12 and "DynamicQuantizeLinear" in ops
    dtypes = {t.name: t.data_type for t in graph.initializer}
    word = [n for n in dtypes if "word_embeddings" in n and n.endswith("_quantized")]
    assert word and dtypes[word[0]] in (
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
    )  # 8-bit embedding table
    head = [n for n in dtypes if n.startswith("model.classifier.")]
    assert head and all(dtypes[n] == onnx.TensorProto.FLOAT for n in head)


def test_residual_layernorm_stays_unfused_in_graph_and_session(chain, tmp_path, monkeypatch):
    """ONNX Runtime's fused SkipLayerNormalization CPU kernel is the slow one (RESULTS "CPU int8: residual +
    LayerNorm unfused, ..."): neither the export nor the session built by the loader may make it."""
    import onnxruntime

    _, _, _, int8 = chain
    path = f"{int8.folder}/{ONNX_FILE}"
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
    assert "BiasGelu" in ops  # the other fusion still runs

    def optimized_ops(name: str, session_kwargs: dict) -> list[str]:
        # ONNX Runtime writes the graph it will run after its own session-time rewrites.
        written = tmp_path / f"{name}.onnx"
        options = session_kwargs.pop("options")
        options.optimized_model_filepath = str(written)
        real_session(session_kwargs.pop("path"), options, **session_kwargs)
        return [n.op_type for n in onnx.load(written).graph.node]

    real_session = onnxruntime.InferenceSession
    seen = {}

    def recording_session(path, options, **kwargs):
        seen.update(path=path, options=options, **kwargs)
        return real_session(path, options, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording_session)
    load_model(int8.folder)
    loader_ops = optimized_ops("loader", dict(seen))
    assert "SkipLayerNormalization" not in loader_ops and "LayerNormalization" in loader_ops
    # Without the recorded list, ONNX Runtime fuses the pattern itself when the session loads.
    plain_ops = optimized_ops("plain", {"path": path, "options": onnxruntime.SessionOptions()})
    assert "SkipLayerNormalization" in plain_ops


def test_op_times_profile_the_deployed_session_by_operator(chain):
    _, _, _, int8 = chain
    model, tokenizer = load_model(int8.folder)
    times = dict(model.op_times(tokenizer(VALIDATION, padding=True, return_tensors="pt"), runs=2))
    # ONNX Runtime fuses DynamicQuantizeLinear + MatMulInteger into its int8 kernels when the session loads:
    # the profile names what runs, and the session-time rewrites the folder disables stay off.
    assert {"DynamicQuantizeMatMul", "LayerNormalization", "BiasGelu"} <= set(times)
    assert "SkipLayerNormalization" not in times and "MatMulInteger" not in times
    assert all(ms > 0 for ms in times.values())
    assert list(times.values()) == sorted(times.values(), reverse=True)


def test_reloaded_logits_are_close_to_the_float_model(chain):
    student, tokenizer, _, int8 = chain
    model, int8_tokenizer = load_classifier_folder(int8.folder)
    texts = VALIDATION + TRAIN
    with torch.no_grad():
        expected = student(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    batch = int8_tokenizer(texts, padding=True, return_tensors="pt")
    got = model(**batch).logits
    assert got.dtype == torch.float32 and got.shape == expected.shape
    # Tolerance: 3% of the largest float logit. Per-channel int8 weights are off by at most 1/254 of their
    # column's range and 8-bit activations by 1/510 of theirs; through 2 layers that stays ~1% (measured
    # 1.1% on this model). Scales applied wrongly miss by far more, and so does ignoring the padding mask,
    # which this model notices (~10%: checked on the int8 graph itself below).
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=0, atol=0.03 * scale)
    assert not torch.equal(got, expected)  # really quantized, not a float graph
    unmasked = model(input_ids=batch["input_ids"]).logits  # the padding read as text
    assert (unmasked - expected).abs().max().item() > 0.03 * scale


def test_onnx_model_times_with_the_report_code(chain):
    _, _, _, int8 = chain
    model, tokenizer = load_classifier_folder(int8.folder)
    feeds = []
    model.session = _SlowSession(model.session, feeds)
    ms = measure_latencies_together({"cpu_int8": (model, tokenizer)}, VALIDATION, batch_size=2, rounds=2)
    # The ONNX session ran the tokenized batch (2 rows, mask included) in each round's two warm-ups and timed
    # call, and the median counts its time.
    assert len(feeds) == 3 * 2 and ms["cpu_int8"] >= _SlowSession.SECONDS * 1000
    assert all(f["input_ids"].shape[0] == 2 and f["attention_mask"].shape[0] == 2 for f in feeds)


class _SlowSession:
    """An ONNX Runtime session that records its feeds and takes at least 20 ms a run."""

    SECONDS = 0.02

    def __init__(self, session, feeds: list):
        self.session, self.feeds = session, feeds

    def run(self, output_names, feed):
        self.feeds.append(feed)
        time.sleep(self.SECONDS)
        return self.session.run(output_names, feed)


def test_unsupported_model_type_and_task_are_refused_before_export(tmp_path, tiny_tokenizer):
    gpt2 = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2, pad_token_id=0)
    GPT2ForSequenceClassification(gpt2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UserInputError, match="does not support model_type 'gpt2'"):
        export_cpu_int8(tmp_path / "gpt2", tmp_path / "out")
    BertForMaskedLM(tiny_bert_config(tiny_tokenizer)).save_pretrained(tmp_path / "mlm")
    with pytest.raises(UserInputError, match="exports sequence classifiers"):
        export_cpu_int8(tmp_path / "mlm", tmp_path / "out")
    assert not (tmp_path / "out" / ONNX_FILE).exists()


def test_an_int8_folder_is_not_exported_again(chain, tmp_path):
    _, _, _, int8 = chain
    with pytest.raises(UserInputError, match="already a CPU int8 export"):
        export_cpu_int8(int8.folder, tmp_path / "again")


def test_push_uploads_the_graph_config_tokenizer_and_a_card_that_loads_it(chain, tmp_path):
    """`hfkit push` of a cpu_int8 folder: model.onnx holds the weights (there is no safetensors file)."""
    _, _, _, int8 = chain
    push = load_recipe("push")
    try:
        out = push.main(["--model_dir", int8.folder, "--out_dir", str(tmp_path / "upload"), "--repo_id",
                         "me/tiny-int8", "--dry_run", "true"])  # fmt: skip
    finally:
        logging.getLogger("hfkit").setLevel(logging.NOTSET)  # main() raised it to INFO for its listing
    tokenizer_files = {p.name for p in Path(int8.folder).iterdir() if p.name in TOKENIZER_FILES}
    assert "tokenizer.json" in tokenizer_files
    assert {p.name for p in out.iterdir()} == {ONNX_FILE, "config.json", "README.md", *tokenizer_files}
    card = (out / "README.md").read_text()
    assert 'load_model(snapshot_download("me/tiny-int8"))' in card and "ONNX Runtime" in card
    assert "safetensors file(s)" not in card
    # What would be uploaded loads on its own and computes what the exported folder computes.
    uploaded, uploaded_tokenizer = load_model(out)
    original, tokenizer = load_model(int8.folder)
    batch = tokenizer(VALIDATION, padding=True, return_tensors="pt")
    assert uploaded_tokenizer(VALIDATION)["input_ids"] == tokenizer(VALIDATION)["input_ids"]
    torch.testing.assert_close(uploaded(**batch).logits, original(**batch).logits, rtol=0, atol=0)
