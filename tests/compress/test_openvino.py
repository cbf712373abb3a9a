"""OpenVINO stages: float32 and NNCF int8 IR folders that reload to the compiled in-memory model's logits.

Converting and quantizing cost seconds each, so one module-scoped fixture runs the chains ``openvino`` and
``openvino_int8`` once on a tiny random BERT, keeping the in-memory models OpenVINO made, and the tests read
what the stages wrote.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from transformers.utils import logging as hf_logging

from hfkit.compress.lowrank import LowRankArguments
from hfkit.compress.pipeline import CompressArguments, measure_variant, run_chains
from hfkit.compress.prune import PruneArguments
from hfkit.compress.quantize import QuantizeArguments
from hfkit.errors import UserInputError
from hfkit.evaluation import measure_latencies_together
from hfkit.hub.upload import TOKENIZER_FILES, prepare_upload_folder
from hfkit.io import (
    OPENVINO_FIELD,
    OPENVINO_FILE,
    OPENVINO_WEIGHTS,
    OpenVinoClassifier,
    compile_openvino,
    load_model,
)
from tests.conftest import write_tiny_student
from tests.recipes.test_classify_recipe import load_recipe

ov = pytest.importorskip(
    "openvino", reason="the openvino stages need openvino (pip install 'hfkit[openvino]')"
)
nncf = pytest.importorskip(
    "nncf", reason="the openvino_int8 stage needs nncf (pip install 'hfkit[openvino]')"
)

_WORDS = [
    "the",
    "a",
    "plot",
    "film",
    "actress",
    "jokes",
    "thriller",
    "gripping",
    "thin",
    "flat",
    "moving",
    "funny",
]
# Training rows: what openvino_int8 calibrates on. Validation shares no row with them.
TRAIN = [" ".join(_WORDS[(i * k) % len(_WORDS)] for k in range(1, 4 + i % 9)) for i in range(40)]
VALIDATION = [
    "the plot is a gripping thriller.",
    "neither funny nor moving, and the jokes fall flat.",
    "thin",
    "an unforgettable performance by the lead actress!",
]
LABELS = [1, 0, 0, 1]


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """(float student, tokenizer, {stage: result}, {stage: in-memory OpenVINO model}, calibration items)."""
    root = tmp_path_factory.mktemp("openvino")
    student, tokenizer = write_tiny_student(root / "student")
    raw = Dataset.from_dict({"text": VALIDATION, "labels": LABELS})
    args = CompressArguments(model_name_or_path=str(root / "student"), chains=["openvino", "openvino_int8"])

    def measure(name, chain, model, folder, parameters, model_tokenizer):
        return measure_variant(
            name, chain, model, model_tokenizer, folder, raw, "text", None, 64, args, parameters
        )

    made, calibration = [], []
    convert, quantize = ov.convert_model, nncf.quantize

    def keep_converted(*a, **k):
        made.append(convert(*a, **k))
        return made[-1]

    def keep_quantized(model, dataset, **k):
        calibration.extend(dataset.get_inference_data())
        made.append(quantize(model, dataset, **k))
        return made[-1]

    # What transformers logs while the stages run (its once-only warnings forgotten, so none is hidden by an
    # earlier test in this process).
    transformers_logs = _Records()
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(transformers_logs)
    hf_logging.warning_once.cache_clear()
    try:
        with (
            mock.patch.object(ov, "convert_model", keep_converted),
            mock.patch.object(nncf, "quantize", keep_quantized),
        ):
            results = run_chains(
                args, tokenizer, str(root / "out"), measure, PruneArguments(), LowRankArguments(),
                QuantizeArguments(), root_parameters=student.num_parameters(), train_rows=lambda: list(TRAIN),
            )  # fmt: skip
    finally:
        transformers_logger.removeHandler(transformers_logs)
    # made: the float conversion (openvino), then the int8 stage's conversion and its quantized model.
    models = {"openvino": made[0], "openvino_int8": made[2]}
    return student, tokenizer, {r.name: r for r in results}, models, calibration, transformers_logs.messages


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_export_logs_no_warning_about_a_loss_it_never_computes(chains):
    """OpenVINO's tracer reads transformers' `loss_function` property on every submodule, which warned
    "`loss_type=None` ... Using the default loss: `ForCausalLMLoss`" for a classifier export."""
    messages = chains[-1]
    assert not [m for m in messages if "loss_type" in m], messages


def _batch(tokenizer):
    return tokenizer(VALIDATION + TRAIN[:4], padding=True, return_tensors="pt")


def _float_logits(student, batch) -> tuple[torch.Tensor, float]:
    """The float32 torch logits and their spread over the inputs (what a prediction reads)."""
    with torch.no_grad():
        expected = student(**batch).logits
    return expected, (expected - expected.mean(0)).abs().max().item()


@pytest.mark.parametrize("name", ["openvino", "openvino_int8"])
def test_folder_reloads_to_the_in_memory_compiled_model(chains, name):
    _, tokenizer, results, models, _, _ = chains
    result = results[name]
    assert result.folder.endswith(name) and Path(result.folder, OPENVINO_FILE).is_file()
    assert Path(result.folder, OPENVINO_WEIGHTS).is_file()
    model, reloaded_tokenizer = load_model(
        result.folder
    )  # the one loader; task read from config.architectures
    assert isinstance(model, OpenVinoClassifier) and not model.training
    assert reloaded_tokenizer(VALIDATION)["input_ids"] == tokenizer(VALIDATION)["input_ids"]
    batch = _batch(tokenizer)
    got = model(**batch).logits
    expected = compile_openvino(models[name])({k: v.numpy() for k, v in batch.items()})[0]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=0, atol=0)  # the same IR, bit for bit
    facts = json.loads(Path(result.folder, "config.json").read_text())[OPENVINO_FIELD]
    assert facts["int8"] is (name == "openvino_int8") and facts["inputs"] == [
        "input_ids",
        "attention_mask",
        "token_type_ids",
    ]
    assert result.parameters == facts["parameters"] == results["openvino"].parameters
    assert result.memory_mb == pytest.approx(facts["weight_bytes"] / 1e6)
    assert not Path(result.folder, "model.safetensors").exists()


def test_float32_ir_matches_torch(chains):
    student, tokenizer, results, _, _, _ = chains
    model, _ = load_model(results["openvino"].folder)
    batch = _batch(tokenizer)
    expected, spread = _float_logits(student, batch)
    # Same float32 math in another order: ~1e-7 of the logits. 0.1% of the spread fails any real error.
    torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-3 * spread)
    assert results["openvino"].extra["openvino_precision"] in ("f32", "bf16")
    # No int8 in the float IR, and it is stored float32 (not float16) on disk.
    ir = ov.Core().read_model(Path(results["openvino"].folder, OPENVINO_FILE))
    types = Counter(
        str(op.get_element_type()) for op in ir.get_ordered_ops() if op.get_type_name() == "Constant"
    )
    assert not any(t in types for t in ("<Type: 'int8_t'>", "<Type: 'float16'>"))


def test_int8_ir_is_close_to_float32_and_sees_the_mask(chains):
    student, tokenizer, results, _, _, _ = chains
    model, _ = load_model(results["openvino_int8"].folder)
    batch = _batch(tokenizer)
    expected, spread = _float_logits(student, batch)
    got = model(**batch).logits
    unmasked = model(input_ids=batch["input_ids"]).logits  # the padding read as text
    # Measured against the spread of the logits over the inputs (a random tiny BERT's logits share a large
    # input-independent part, and the spread is what a prediction reads). 8-bit weights, embedding tables and
    # activations through 2 layers, calibrated on 40 training rows: 31% of the spread on this model (0.015 of
    # 0.048). Tolerance 50%: ignoring the padding mask misses by 108% (checked on the int8 graph itself below);
    # scales applied wrongly or a dropped layer miss by more.
    atol = 0.5 * spread
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    assert (unmasked - expected).abs().max().item() > atol
    assert not torch.equal(got, expected)


def test_int8_ir_holds_int8_weights_and_runs_int8_kernels(chains):
    _, _, results, _, _, _ = chains
    folder = results["openvino_int8"].folder
    ir = ov.Core().read_model(Path(folder, OPENVINO_FILE))
    ops = Counter(op.get_type_name() for op in ir.get_ordered_ops())
    int8_weights = [
        op
        for op in ir.get_ordered_ops()
        if op.get_type_name() == "Constant"
        and op.get_element_type() == ov.Type.i8
        and op.get_byte_size() > 64
    ]
    # 2 layers x (q, k, v, attention output, intermediate, output) weight matrices stored int8, with the
    # activations quantized in front of them, and NNCF's int8 embedding tables (word, position, token type).
    shapes = sorted(list(op.get_output_shape(0)) for op in int8_weights)
    assert len(int8_weights) == 12 + 3 and [30522, 64] in shapes and ops["FakeQuantize"] >= 12
    # The CPU plugin runs those 12 matrix products as int8 FullyConnected; the pooler and head stay f32.
    compiled = load_model(folder)[0].compiled
    runtime = Counter(
        (op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
        for op in compiled.get_runtime_model().get_ordered_ops()
    )
    # Activations quantized signed (i8) or unsigned (u8) as their calibrated range asks.
    int8_products = runtime[("FullyConnected", "u8")] + runtime[("FullyConnected", "i8")]
    assert int8_products == 12 and runtime[("FullyConnected", "f32")] == 2
    # int8 tables and matrices: about a quarter of the float32 IR.
    assert results["openvino_int8"].size_mb < 0.35 * results["openvino"].size_mb


def test_int8_calibrates_on_training_rows_only(chains):
    _, tokenizer, results, _, calibration, _ = chains
    train_ids = [tokenizer(t)["input_ids"] for t in TRAIN]
    assert len(calibration) == len(TRAIN) == results["openvino_int8"].extra["calibration_rows"]
    assert all(item["input_ids"].shape[0] == 1 for item in calibration)  # one row each, unpadded
    assert sorted(item["input_ids"][0].tolist() for item in calibration) == sorted(train_ids)


def test_openvino_model_times_with_the_report_code(chains):
    _, _, results, _, _, _ = chains
    models = {name: load_model(results[name].folder) for name in ("openvino", "openvino_int8")}
    ms = measure_latencies_together(models, VALIDATION, batch_size=2, rounds=2)
    assert all(ms[name] > 0 for name in models)


def test_int8_without_training_rows_is_refused(chains, tmp_path):
    student, tokenizer, _, _, _, _ = chains
    student.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    args = CompressArguments(model_name_or_path=str(tmp_path / "student"), chains=["openvino_int8"])
    with pytest.raises(UserInputError, match="needs training rows"):
        run_chains(args, tokenizer, str(tmp_path / "out"), None, PruneArguments(), LowRankArguments(),
                   QuantizeArguments())  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["openvino", "openvino_int8"])
def test_push_uploads_the_ir_its_weights_config_tokenizer_and_a_card_that_loads_it(chains, name, tmp_path):
    """`hfkit push` of an OpenVINO folder: the IR's .xml + .bin hold the weights (there is no safetensors file)."""
    _, _, results, _, _, _ = chains
    folder = results[name].folder
    push = load_recipe("push")
    try:
        out = push.main(["--model_dir", folder, "--out_dir", str(tmp_path / "upload"), "--repo_id",
                         "me/tiny-ov", "--dry_run", "true"])  # fmt: skip
    finally:
        logging.getLogger("hfkit").setLevel(logging.NOTSET)  # main() raised it to INFO for its listing
    tokenizer_files = {p.name for p in Path(folder).iterdir() if p.name in TOKENIZER_FILES}
    assert "tokenizer.json" in tokenizer_files
    assert {p.name for p in out.iterdir()} == {
        OPENVINO_FILE, OPENVINO_WEIGHTS, "config.json", "README.md", *tokenizer_files
    }  # fmt: skip
    card = (out / "README.md").read_text()
    precision = "int8" if name == "openvino_int8" else "float32"
    assert 'load_model(snapshot_download("me/tiny-ov"))' in card and f"OpenVINO IR ({precision}" in card
    tags = ModelCard.load(out / "README.md").data.tags
    assert "openvino" in tags and ("8-bit" in tags) == ("quantization" in tags) == (name == "openvino_int8")
    assert "safetensors file(s)" not in card
    # What would be uploaded loads on its own and computes what the exported folder computes.
    uploaded, uploaded_tokenizer = load_model(out)
    original, tokenizer = load_model(folder)
    batch = tokenizer(VALIDATION, padding=True, return_tensors="pt")
    assert uploaded_tokenizer(VALIDATION)["input_ids"] == tokenizer(VALIDATION)["input_ids"]
    torch.testing.assert_close(uploaded(**batch).logits, original(**batch).logits, rtol=0, atol=0)


def test_an_openvino_folder_without_its_weights_is_not_uploaded(chains, tmp_path):
    _, _, results, _, _, _ = chains
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in Path(results["openvino"].folder).iterdir():
        if p.name != OPENVINO_WEIGHTS:
            (broken / p.name).write_bytes(p.read_bytes())
    with pytest.raises(
        UserInputError, match=f"OpenVINO folder without its {OPENVINO_WEIGHTS}: export it again"
    ):
        prepare_upload_folder(broken, tmp_path / "upload")
    assert not (tmp_path / "upload").exists()
