"""Causal LMs on OpenVINO for CPU decoding: one IR for the prompt and every decoding step, float32 or int8 weights.

    hfkit export --model_name_or_path outputs/clm/smollm2_shakespeare --output_dir outputs/deploy/smollm2_ov_int8 \
        --int8_weights true            # or export_openvino_lm(folder, output_dir, int8_weights=True) in Python
    hfkit generate --model_name_or_path outputs/deploy/smollm2_ov_int8 --prompt "ROMEO:" --chat_template false

`export_openvino_lm` converts a saved causal LM (eager attention, float32) with `openvino.convert_model` into one
IR whose inputs are the new token ids, the attention mask, the position ids, the positions to score and the
key/value cache of every layer (length 0 for the prompt), and whose outputs are the logits at the scored
positions (the last one when decoding) and the grown cache. `int8_weights` then
stores every weight matrix int8 with a per-channel scale and zero point (NNCF `compress_weights`, INT8_ASYM):
weight-only, activations stay float32, so no calibration data is needed. The folder holds the IR
(``openvino_model.xml`` + ``.bin``), ``config.json`` (field ``openvino_lm``), ``generation_config.json`` and the
tokenizer.

`hfkit.io.OpenVinoCausalLM(folder)` (re-exported here; `hfkit.load_model(folder)` returns one) runs it:
`generate(input_ids=..., attention_mask=..., generation_config=...)` decodes a left-padded batch greedily like
transformers' `generate` (all rows step together; prompt + new tokens out, rows that end early padded with the
pad id), so `hfkit.generation.generate_details` and `hfkit generate` take it like a transformers model. Greedy
only: sampling, beams and assisted decoding are refused with the fix.

Why not optimum-intel: its 2.2.0 (the latest) requires transformers < 5.6 and does not import with the
transformers hfkit runs. Why decode on OpenVINO at all, on an AVX2 CPU: RESULTS "OpenVINO decoding of a causal
LM" (the float IR gives the same greedy tokens faster than torch; int8 weights are faster again at nearly the
same held-out perplexity, while torch's dynamic int8 quantization of the same model doubled its perplexity).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.cache_utils import DynamicCache

from ..errors import UserInputError
from ..io import OPENVINO_FILE, OPENVINO_LM_FIELD, OpenVinoCausalLM, is_openvino_lm
from ..modeling import resolve_model_path

__all__ = [
    "OPENVINO_LM_FIELD",
    "SUPPORTED_LM_TYPES",
    "OpenVinoCausalLM",
    "export_openvino_lm",
    "is_openvino_lm",
]

logger = logging.getLogger(__name__)

# Decoder families whose export was checked against transformers' greedy tokens (tests: tiny random models of
# each; SmolLM2-135M, a llama, in RESULTS). Their caches are plain per-layer key/value tensors.
SUPPORTED_LM_TYPES = ("llama", "qwen2")


@dataclass
class OpenVinoLMArguments:
    """Which causal LM to export for OpenVINO decoding, where, and how its weights are stored."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The causal LM folder to export (llama or qwen2 family, e.g. a `hfkit clm` output_dir)."
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "A new folder for the OpenVINO model (an existing OpenVINO folder is never overwritten)."
        },
    )
    int8_weights: bool = field(
        default=False,
        metadata={
            "help": "Store the weights int8 (per-channel, asymmetric; activations stay float32, no calibration): "
            "a quarter of the bytes and faster decoding; greedy tokens may differ after a near-tie."
        },
    )


class _Step(torch.nn.Module):
    """The causal LM as one step on explicit tensors: (ids, mask, positions, scored, k_0, v_0, ...) ->
    (logits at the `scored` positions of ids, k_0, v_0, ...): decoding scores the last position only, a
    perplexity every position, so a 150k-word vocabulary is not projected at every prompt token."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        # transformers 5.25 renamed past_key_values to cache (the old name still works, with a warning).
        self.cache_argument = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    def forward(self, input_ids, attention_mask, position_ids, scored, *past):
        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(cache.layers):
            # Filled directly: DynamicCache's own lazy start concatenates onto a 1-d empty tensor, which the
            # converter cannot type.
            layer.keys, layer.values = past[2 * i], past[2 * i + 1]
            layer.is_initialized, layer.device = True, past[0].device
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
            logits_to_keep=scored, **{self.cache_argument: cache},
        )  # fmt: skip
        grown = []
        # transformers 5.25 names it `cache`; reading the old name is what warns, so only as a fallback.
        cache = out["cache"] if "cache" in out else out.past_key_values  # noqa: SIM401
        for layer in cache.layers:
            grown += [layer.keys, layer.values]
        return (out.logits, *grown)


def _cache_shape(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a decoder config."""
    heads = config.num_attention_heads
    return (
        config.num_hidden_layers,
        getattr(config, "num_key_value_heads", None) or heads,
        getattr(config, "head_dim", None) or config.hidden_size // heads,
    )


def export_openvino_lm(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike,
    int8_weights: bool = False,
    tokenizer: Any = None,
) -> str:
    """Export a saved causal LM to an OpenVINO folder for greedy CPU decoding (see the module docstring)."""
    try:
        import openvino as ov
    except ImportError as err:
        raise UserInputError(
            'OpenVINO decoding needs openvino and nncf: pip install "hfkit[openvino]".'
        ) from err
    folder, output_dir = resolve_model_path(os.fspath(folder)), os.fspath(output_dir)
    config = AutoConfig.from_pretrained(folder)
    if is_openvino_lm(folder):
        raise UserInputError(
            f"{folder} is already an OpenVINO folder: export from the transformers model it came from."
        )
    if config.model_type not in SUPPORTED_LM_TYPES:
        raise UserInputError(
            f"OpenVINO decoding supports model types {', '.join(SUPPORTED_LM_TYPES)}; {folder} is "
            f"'{config.model_type}'. Decode it with torch (hfkit generate on the folder itself)."
        )
    if os.path.isfile(os.path.join(output_dir, OPENVINO_FILE)):
        raise UserInputError(
            f"{output_dir} already holds an OpenVINO model: give another --output_dir (a deployed model is never "
            "overwritten)."
        )
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    parameters = model.num_parameters()
    layers, kv_heads, head_dim = _cache_shape(model.config)
    # Traced on 2 new tokens after 3 cached ones, so neither length is taken for a constant; then every length
    # is made dynamic (the prompt runs with a cache of length 0, each step with one new token).
    example = (
        torch.tensor([[5, 7]]),
        torch.ones(1, 5, dtype=torch.long),
        torch.tensor([[3, 4]]),
        torch.tensor([1]),
        *[torch.zeros(1, kv_heads, 3, head_dim) for _ in range(2 * layers)],
    )
    started = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        for (
            module
        ) in model.modules():  # as in hfkit.compress.openvino: no warning about a loss never computed
            if isinstance(module, PreTrainedModel):
                module.loss_function = None
        ov_model = ov.convert_model(_Step(model), example_input=example)
    del model
    shapes = {port: [-1, -1] for port in ov_model.inputs[:3]}
    shapes[ov_model.inputs[3]] = [-1]
    shapes.update({port: [-1, kv_heads, -1, head_dim] for port in ov_model.inputs[4:]})
    ov_model.reshape(shapes)
    if int8_weights:
        import nncf

        nncf_logger = logging.getLogger("nncf")
        level = nncf_logger.level
        nncf_logger.setLevel(logging.WARNING)  # its per-layer tables; hfkit's log says what was done
        try:
            ov_model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        finally:
            nncf_logger.setLevel(level)
    os.makedirs(output_dir, exist_ok=True)
    ov.save_model(ov_model, os.path.join(output_dir, OPENVINO_FILE), compress_to_fp16=False)
    setattr(
        config,
        OPENVINO_LM_FIELD,
        {
            "file": OPENVINO_FILE,
            "parameters": parameters,
            "layers": layers,
            "key_value_heads": kv_heads,
            "head_dim": head_dim,
            "logits_positions": True,  # the IR's 4th input names the positions whose logits it returns
            "weights": "int8 (per-channel, asymmetric; activations float32)" if int8_weights else "float32",
            "openvino": ov.__version__,
        },
    )
    config.save_pretrained(output_dir)
    with contextlib.suppress(OSError):  # no generation_config.json: the config's own eos/pad ids serve
        GenerationConfig.from_pretrained(folder).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info(
        "openvino_lm: %s -> %s (%s weights, %.0f s)",
        folder, output_dir, "int8" if int8_weights else "float32", time.perf_counter() - started,
    )  # fmt: skip
    return output_dir
