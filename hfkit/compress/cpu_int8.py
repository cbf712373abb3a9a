"""Fast CPU int8 deployment of encoder classifiers with ONNX Runtime: int8 weights (embedding tables too) and
int8 activations quantized on the fly.

`export_cpu_int8(folder, output)` exports a saved classifier (dense, low-rank or vocabulary-trimmed) with
`torch.onnx.export` (the dynamo exporter), fuses bias + GELU with ONNX Runtime's transformer optimizer
and quantizes it with `onnxruntime.quantization.quantize_dynamic`: every weight MatMul becomes a
dynamically quantized int8 MatMul and the word, position and token-type embedding tables are stored int8
(Gather + DequantizeLinear). The task head and pooler stay float, as in the bitsandbytes variants. The
output folder holds ``model.onnx``, ``config.json`` (with a ``cpu_int8`` field) and the tokenizer;
`hfkit.io.load_model` reloads it as an `OnnxClassifier` that returns logits like the transformers model.

Why ONNX Runtime and not torchao (measured on the 3-layer MiniLM student, one AVX2 core without VNNI,
torch 2.13 CPU, batch 32 x 64 tokens): ONNX Runtime's MLAS has u8s8 int8 GEMM kernels for AVX2, so the
quantized graph runs ~2x faster than torch float32 with no compilation step. torchao's
`Int8DynamicActivationInt8WeightConfig` has no fast eager CPU kernel (20x slower than float32 here) and
relies on `torch.compile`, which took over 6 minutes on one core and is paid again at every load.

Why residual + LayerNorm stays unfused: ONNX Runtime 1.32's CPU SkipLayerNormalization kernel (what its
optimizer and its session-time `SkipLayerNormFusion` make of Add + LayerNormalization) took 29.8 ms of a 254 ms
int8 forward at batch 32 x 64 tokens on an AVX2 core, about three times the unfused ops it replaces; without it
the int8 graph ran 1.83x torch float32 instead of 1.66x (batch 1: 2.68x instead of 2.48x), same accuracy. The
export leaves the pattern unfused and records `SkipLayerNormFusion` under `ort_disabled_optimizers`, which
`OnnxClassifier` hands to the session (RESULTS "CPU int8: residual + LayerNorm unfused, and why batch 32 stays
under 2x on AVX2").

Why the attention is exported in eager mode: the SDPA graph adds mask guards (Where/IsNaN) that cost ~5%
at batch 32; eager attention exports plain MatMul/Softmax. The attention score products stay float
(activation x activation), only weights are int8.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel

from ..errors import UserInputError
from ..io import (
    CPU_INT8_FIELD,
    ONNX_FILE,
    TaskKind,
    float_classifier_config,
    load_weights,
)
from ..modeling import resolve_model_path
from .quantize import skip_modules_for

__all__ = ["SUPPORTED_MODEL_TYPES", "CpuInt8Arguments", "export_cpu_int8"]

logger = logging.getLogger(__name__)

# Encoder families whose export, fusion and quantization were checked against the float logits (BERT-style
# embeddings + post-LayerNorm blocks: ONNX Runtime's 'bert' optimizer applies): bert in the tests; roberta,
# xlm-roberta and distilbert on tiny random models (float graph within 1e-8, int8 within 4e-4). Others are refused.
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert")

# ONNX Runtime session-time graph rewrites the exported graph must not get (recorded in the folder's config and
# applied by `OnnxClassifier`): the fused SkipLayerNormalization kernel is slower than what it replaces.
ORT_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


@dataclass
class CpuInt8Arguments:
    """How to export a classifier to an int8 ONNX Runtime graph for the CPU."""

    cpu_int8_per_channel: bool = field(
        default=True,
        metadata={
            "help": "One int8 scale per channel of each weight matrix and embedding table instead of one "
            "per tensor: closer to the float logits at the same speed."
        },
    )
    cpu_int8_embeddings: bool = field(
        default=True,
        metadata={"help": "Store the embedding tables int8 too (most of a small student's weights)."},
    )
    cpu_int8_fuse: bool = field(
        default=True,
        metadata={
            "help": "Fuse bias + GELU with ONNX Runtime's transformer optimizer before quantizing (same "
            "outputs, faster). Residual + LayerNorm is left unfused, at export and when the session loads: "
            "ONNX Runtime's fused SkipLayerNormalization CPU kernel is the slower one."
        },
    )


class _LogitsOnly(torch.nn.Module):
    """The classifier with named tensor inputs and the logits as its one output (what the graph exposes)."""

    def __init__(self, model: PreTrainedModel, input_names: list[str]):
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def _export(model: PreTrainedModel, tokenizer: Any, path: str) -> list[str]:
    """Export the float classifier to `path` with batch and sequence length dynamic; return the input names."""
    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    names = [n for n in names if n in accepted]
    # Two rows of different lengths, so the exporter sees padding and no size is taken for a constant.
    example = tokenizer(
        ["a short one", "a somewhat longer example sentence"], padding=True, return_tensors="pt"
    )
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    # The exporter's own notices, not about this model: one Dim is shared by every input on purpose, and
    # torchvision's operators are not needed.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*axis name: .* will not be used", category=UserWarning
            )
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            torch.onnx.export(
                _LogitsOnly(model, names).eval(),
                tuple(example[n] for n in names),
                path,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes={"inputs": tuple({0: batch, 1: length} for _ in names)},
                dynamo=True,
                opset_version=18,
                verbose=False,
            )
    finally:
        registration.setLevel(level)
    return names


def _fuse(path: str, out: str) -> str:
    """ONNX Runtime's transformer fusions for a BERT-style graph, residual + LayerNorm excepted (see the module
    docstring); writes `out` and returns it. Pure pattern fusions, no precision change."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = False
    # num_heads/hidden_size 0: read from the graph.
    optimizer.optimize_model(
        path, model_type="bert", num_heads=0, hidden_size=0, opt_level=1, optimization_options=fusions
    ).save_model_to_file(out)
    return out


def _float_head_nodes(model_path: str, skip: list[str]) -> list[str]:
    """Names of the MatMul/Gemm nodes that compute the task head and pooler (kept float, as with bitsandbytes)."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    prefixes = tuple(f"model.{name}." for name in skip)
    names = []
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and any(
            i in weights and i.startswith(prefixes) for i in node.input
        ):
            # quantize_dynamic first rewrites a Gemm into a MatMul called '<name>_MatMul' (+ an Add).
            names += [node.name, node.name + "_MatMul"]
    return names


class _DropPreprocessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


@contextlib.contextmanager
def _quiet_preprocessing_hint():
    """Drop quantize_dynamic's root-logger hint to run ONNX Runtime's pre-processing (the fusions above do its job)."""
    hint = _DropPreprocessingHint()
    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)


def _weight_bytes(model_path: str) -> int:
    """Bytes of the graph's initializers (its weights as ONNX Runtime holds them before any repacking)."""
    import math

    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(model_path, load_external_data=False).graph
    return sum(math.prod(t.dims) * tensor_dtype_to_np_dtype(t.data_type).itemsize for t in graph.initializer)


def export_cpu_int8(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike,
    args: CpuInt8Arguments | None = None,
    tokenizer: Any = None,
) -> str:
    """Export a saved classifier folder to an int8 ONNX Runtime folder (model.onnx, config, tokenizer)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise UserInputError(
            'cpu_int8 needs onnxruntime, onnx and onnxscript: pip install "hfkit[onnx]".'
        ) from err
    args = args or CpuInt8Arguments()
    folder = resolve_model_path(os.fspath(folder))
    output_dir = os.fspath(output_dir)
    config = float_classifier_config(folder, "cpu_int8", SUPPORTED_MODEL_TYPES)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder)
    model = load_weights(folder, TaskKind.TEXT_CLASSIFICATION, attn_implementation="eager")
    parameters = model.num_parameters()
    skip = skip_modules_for(model)
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir) as work:
        float_path = os.path.join(work, "float.onnx")
        inputs = _export(model, tokenizer, float_path)
        del model
        if args.cpu_int8_fuse:
            float_path = _fuse(float_path, os.path.join(work, "fused.onnx"))
        out_path = os.path.join(output_dir, ONNX_FILE)
        with _quiet_preprocessing_hint():
            quantize_dynamic(
                float_path,
                out_path,
                op_types_to_quantize=["MatMul", "Gather"] if args.cpu_int8_embeddings else ["MatMul"],
                weight_type=QuantType.QInt8,  # u8 activations x s8 weights: MLAS's fast AVX2/VNNI path
                per_channel=args.cpu_int8_per_channel,
                nodes_to_exclude=_float_head_nodes(float_path, skip),
            )
    import onnxruntime

    setattr(
        config,
        CPU_INT8_FIELD,
        {
            "file": ONNX_FILE,
            "inputs": inputs,
            "parameters": parameters,
            "weight_bytes": _weight_bytes(out_path),
            "float_modules": skip,
            "per_channel": args.cpu_int8_per_channel,
            "embeddings_int8": args.cpu_int8_embeddings,
            "fused": args.cpu_int8_fuse,
            "ort_disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS),
            "onnxruntime": onnxruntime.__version__,
        },
    )
    config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    for stale in ("model.safetensors", "model.safetensors.index.json"):
        # Exporting into an old float folder must not leave weights that from_pretrained would pick up.
        if os.path.exists(os.path.join(output_dir, stale)):
            os.remove(os.path.join(output_dir, stale))
    logger.info("cpu_int8: %s -> %s (%.1f MB)", folder, out_path, os.path.getsize(out_path) / 1e6)
    return output_dir
