"""OpenVINO deployment of encoder classifiers on the CPU: a float32 IR, or an int8 IR quantized by NNCF.

`export_openvino(folder, output)` converts a saved classifier (dense, low-rank or vocabulary-trimmed) from torch
with `openvino.convert_model` (batch and sequence length dynamic) and saves the IR, ``openvino_model.xml`` +
``.bin``, with ``config.json`` (an ``openvino`` field) and the tokenizer; `hfkit.io.load_model` reloads it as an
`OpenVinoClassifier` that returns logits like the transformers model.

* float32 (``int8=False``): the weights stay float32 on disk (``compress_to_fp16=False``); OpenVINO chooses the
  inference precision when it compiles: bf16 on CPUs with AMX or AVX512-BF16, float32 elsewhere.
* int8 (``int8=True``): NNCF post-training quantization (``nncf.quantize``, transformer preset: int8 weight
  matrices and embedding tables, int8 activations with scales calibrated on a sample of TRAINING rows,
  SmoothQuant). The caller passes the
  rows; the pipeline passes the training split only, never validation, so the reported accuracy is not fitted
  to the text it is measured on. The pooler and task head stay float, as in the other int8 stages.

Why from torch and not from cpu_int8's ONNX file: convert_model traces the model in seconds (the dynamo ONNX
export takes tens), keeps PyTorch's SDPA as one ScaledDotProductAttention op that OpenVINO runs fused, and names
the IR's inputs after the forward's arguments.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel

from ..errors import UserInputError
from ..io import (
    OPENVINO_FIELD,
    OPENVINO_FILE,
    OPENVINO_WEIGHTS,
    TaskKind,
    float_classifier_config,
    load_weights,
)
from ..modeling import resolve_model_path
from .cpu_int8 import SUPPORTED_MODEL_TYPES
from .quantize import skip_modules_for

__all__ = ["OpenVinoArguments", "export_openvino", "int8_weight_constants"]

logger = logging.getLogger(__name__)

# A training row to calibrate on: one text, or the two texts of a pair.
Row = str | tuple[str, str]


@dataclass
class OpenVinoArguments:
    """How to export a classifier to an OpenVINO IR (float32, or int8 with NNCF) for the CPU."""

    openvino_calibration_rows: int = field(
        default=300,
        metadata={
            "help": "openvino_int8: training rows (a random sample, never validation) whose activations set the "
            "int8 scales. NNCF's default; more rarely helps a classifier."
        },
    )
    openvino_calibration_seed: int = field(
        default=0, metadata={"help": "openvino_int8: seed of the calibration sample."}
    )
    openvino_max_length: int = field(
        default=128, metadata={"help": "openvino_int8: calibration rows are truncated to this many tokens."}
    )

    def __post_init__(self):
        if self.openvino_calibration_rows < 1:
            raise ValueError(
                f"openvino_calibration_rows={self.openvino_calibration_rows}: give at least 1 (e.g. 300)."
            )


def _encode(tokenizer: Any, rows: Sequence[Row], names: list[str], max_length: int, padding: bool) -> Any:
    texts = [r if isinstance(r, str) else r[0] for r in rows]
    pairs = [r[1] for r in rows] if rows and not isinstance(rows[0], str) else None
    encoded = tokenizer(
        texts, pairs, padding=padding, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {n: encoded[n] for n in names}


def _calibration(
    tokenizer: Any, rows: Sequence[Row], names: list[str], args: OpenVinoArguments
) -> list[dict[str, Any]]:
    """A seeded sample of the rows, one row per item (natural length, no padding), as numpy inputs."""
    if not rows:
        raise UserInputError(
            "openvino_int8 needs training rows to calibrate on; the training split is empty."
        )
    rows = list(rows)
    sample = random.Random(args.openvino_calibration_seed).sample(
        rows, min(args.openvino_calibration_rows, len(rows))
    )
    return [
        {n: t.numpy() for n, t in _encode(tokenizer, [r], names, args.openvino_max_length, False).items()}
        for r in sample
    ]


def int8_weight_constants(ov_model: Any) -> int:
    """How many weight constants of an OpenVINO model are stored int8 (what NNCF's quantization leaves)."""
    import openvino as ov

    return sum(
        1
        for op in ov_model.get_ordered_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
    )


def export_openvino(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike,
    args: OpenVinoArguments | None = None,
    tokenizer: Any = None,
    int8: bool = False,
    calibration_rows: Sequence[Row] | None = None,
) -> str:
    """Export a saved classifier folder to an OpenVINO IR folder (float32, or int8 calibrated on the given rows)."""
    try:
        import openvino as ov
    except ImportError as err:
        raise UserInputError(
            'the openvino stages need openvino and nncf: pip install "hfkit[openvino]".'
        ) from err
    args = args or OpenVinoArguments()
    folder = resolve_model_path(os.fspath(folder))
    output_dir = os.fspath(output_dir)
    config = float_classifier_config(folder, "openvino", SUPPORTED_MODEL_TYPES)
    if int8 and calibration_rows is None:
        raise UserInputError("openvino_int8 needs calibration_rows: a sample of the training rows.")
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder)
    model = load_weights(folder, TaskKind.TEXT_CLASSIFICATION, dtype=torch.float32)
    parameters = model.num_parameters()
    skip = skip_modules_for(model)
    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    names = [n for n in names if n in accepted]
    # Two rows of different lengths, so the tracer sees padding and no size is taken for a constant.
    example = _encode(tokenizer, ["a short one", "a somewhat longer example sentence"], names, 64, True)
    with torch.no_grad(), warnings.catch_warnings():
        # convert_model traces with torch.jit (deprecated in torch, still OpenVINO's path), and transformers'
        # mask code branches on shapes that are equal for every encoder input (mask length == input length),
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        # and OpenVINO's converter still asks transformers for a renamed property.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        # The tracer reads every attribute of each submodule; transformers' `loss_function` getter then warns
        # about a loss type (naming a causal-LM loss) that this forward, without labels, never computes.
        for module in model.modules():
            if isinstance(module, PreTrainedModel):
                module.loss_function = None
        ov_model = ov.convert_model(model, example_input=example)
    del model
    extra: dict[str, Any] = {}
    if int8:
        import nncf

        data = _calibration(tokenizer, calibration_rows, names, args)
        # NNCF logs a line at INFO for every node it leaves float; hfkit's own log says what was done.
        nncf_logger = logging.getLogger("nncf")
        level = nncf_logger.level
        nncf_logger.setLevel(logging.WARNING)
        try:
            ov_model = nncf.quantize(
                ov_model,
                nncf.Dataset(data),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(data),
                # The pooler and head stay float (few weights, and the logits come straight out of them).
                ignored_scope=nncf.IgnoredScope(patterns=[_node_pattern(n) for n in skip], validate=False),
            )
        finally:
            nncf_logger.setLevel(level)
        extra = {"calibration_rows": len(data), "calibration_split": "train", "nncf": nncf.__version__}
    os.makedirs(output_dir, exist_ok=True)
    xml = os.path.join(output_dir, OPENVINO_FILE)
    # float32 on disk (save_model's default halves weights to float16); the precision is chosen at compile time.
    ov.save_model(ov_model, xml, compress_to_fp16=False)
    weight_bytes = sum(
        op.get_byte_size() for op in ov_model.get_ordered_ops() if op.get_type_name() == "Constant"
    )
    facts = {
        "file": OPENVINO_FILE,
        "inputs": names,
        "parameters": parameters,
        "weight_bytes": int(weight_bytes),
        "int8": int8,
        "float_modules": skip if int8 else [],
        "openvino": ov.__version__,
        **extra,
    }
    setattr(config, OPENVINO_FIELD, facts)
    config.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    for stale in ("model.safetensors", "model.safetensors.index.json"):
        # Exporting into an old float folder must not leave weights that from_pretrained would pick up.
        if os.path.exists(os.path.join(output_dir, stale)):
            os.remove(os.path.join(output_dir, stale))
    logger.info(
        "openvino%s: %s -> %s (%.1f MB)", "_int8" if int8 else "", folder, xml,
        os.path.getsize(os.path.join(output_dir, OPENVINO_WEIGHTS)) / 1e6,
    )  # fmt: skip
    return output_dir


def _node_pattern(module: str) -> str:
    """The IR nodes convert_model makes for a torch module: '__module.<qualified name>/aten::...' and below."""
    return ".*" + re.escape(f"__module.{module}") + "[./].*"
