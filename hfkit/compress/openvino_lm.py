"""Causal LMs on OpenVINO for CPU decoding: one IR for the prompt and every decoding step, float32 or int8 weights.

    hfkit export --model_name_or_path outputs/clm/smollm2_shakespeare --output_dir outputs/deploy/smollm2_ov_int8 \
        --int8_weights true            # or export_openvino_lm(folder, output_dir, int8_weights=True) in Python
    hfkit generate --model_name_or_path outputs/deploy/smollm2_ov_int8 --prompt "ROMEO:" --chat_template false

`export_openvino_lm` converts a saved causal LM (eager attention, float32) with `openvino.convert_model` into one
IR whose inputs are the new token ids, the attention mask, the position ids and the key/value cache of every
layer (length 0 for the prompt), and whose outputs are the logits and the grown cache. `int8_weights` then
stores every weight matrix int8 with a per-channel scale and zero point (NNCF `compress_weights`, INT8_ASYM):
weight-only, activations stay float32, so no calibration data is needed. The folder holds the IR
(``openvino_model.xml`` + ``.bin``), ``config.json`` (field ``openvino_lm``), ``generation_config.json`` and the
tokenizer.

`OpenVinoCausalLM(folder)` runs it: `generate(input_ids=..., attention_mask=..., generation_config=...)` decodes
greedily like transformers' `generate` (left-padded rows in, prompt + new tokens out, rows that end early padded
with the pad id), so `hfkit.generation.generate_details` and `hfkit generate` take it like a transformers model.
Greedy only: sampling, beams and assisted decoding are refused with the fix.

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

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedModel
from transformers.cache_utils import DynamicCache

from ..errors import MissingInputError, UserInputError
from ..generation import eos_token_ids
from ..io import OPENVINO_FILE
from ..modeling import resolve_model_path

__all__ = [
    "OPENVINO_LM_FIELD",
    "SUPPORTED_LM_TYPES",
    "OpenVinoCausalLM",
    "export_openvino_lm",
    "is_openvino_lm",
]

logger = logging.getLogger(__name__)

OPENVINO_LM_FIELD = "openvino_lm"
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


def is_openvino_lm(folder: str | os.PathLike) -> bool:
    """True when `folder` is a causal-LM folder this module exported (its config.json has `openvino_lm`)."""
    path = os.path.join(os.fspath(folder), "config.json")
    if not os.path.isfile(path):
        return False
    import json

    with open(path) as f:
        return bool(json.load(f).get(OPENVINO_LM_FIELD))


class _Step(torch.nn.Module):
    """The causal LM as one step on explicit tensors: (ids, mask, positions, k_0, v_0, ...) -> (logits, k_0, ...)."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        # transformers 5.25 renamed past_key_values to cache (the old name still works, with a warning).
        self.cache_argument = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(cache.layers):
            # Filled directly: DynamicCache's own lazy start concatenates onto a 1-d empty tensor, which the
            # converter cannot type.
            layer.keys, layer.values = past[2 * i], past[2 * i + 1]
            layer.is_initialized, layer.device = True, past[0].device
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
            **{self.cache_argument: cache},
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
    shapes.update({port: [-1, kv_heads, -1, head_dim] for port in ov_model.inputs[3:]})
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


class OpenVinoCausalLM:
    """A causal LM exported by `export_openvino_lm`, decoded greedily by OpenVINO on the CPU.

    Called like a transformers model where hfkit's generation path needs it: `generate(input_ids=...,
    attention_mask=..., generation_config=..., streamer=...)` returns prompt + new ids as a torch tensor, and
    `device`, `generation_config`, `eval()` and `forward`'s signature are there.
    """

    def __init__(self, folder: str | os.PathLike, num_threads: int | None = None):
        try:
            import openvino as ov
        except ImportError as err:
            raise UserInputError(
                f'{folder} is an OpenVINO folder and openvino is not installed: pip install "hfkit[openvino]".'
            ) from err
        folder = os.fspath(folder)
        path = os.path.join(folder, OPENVINO_FILE)
        if not os.path.isfile(path):
            raise MissingInputError(
                f"{path} not found: {folder} is not a complete OpenVINO folder; export it again."
            )
        self.config = AutoConfig.from_pretrained(folder)
        self._facts = getattr(self.config, OPENVINO_LM_FIELD)
        try:
            self.generation_config = GenerationConfig.from_pretrained(folder)
        except OSError:
            self.generation_config = GenerationConfig.from_model_config(self.config)
        self.device = torch.device("cpu")
        settings = {"INFERENCE_NUM_THREADS": num_threads or torch.get_num_threads(), "NUM_STREAMS": 1}
        self.compiled = ov.Core().compile_model(path, "CPU", settings)

    def eval(self) -> OpenVinoCausalLM:
        return self

    def num_parameters(self) -> int:
        return int(self._facts["parameters"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
        """Not a training model: decode with `generate` (the signature says which inputs it takes)."""
        raise TypeError("OpenVinoCausalLM decodes with generate(); it has no training forward.")

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        streamer: Any = None,
        **unsupported: Any,
    ) -> torch.Tensor:
        """Greedy decoding of each row (left padding removed), returned left-padded like transformers' generate."""
        config = generation_config or self.generation_config
        if unsupported:
            raise UserInputError(
                f"OpenVINO decoding does not take {', '.join(sorted(unsupported))} (assisted decoding needs the "
                "transformers model): drop it, or decode the transformers folder."
            )
        if config.do_sample or (config.num_beams or 1) > 1 or (config.repetition_penalty or 1.0) != 1.0:
            raise UserInputError(
                "OpenVINO decoding is plain greedy: drop sampling, beams and repetition_penalty, or decode the "
                "transformers folder."
            )
        eos = eos_token_ids(self, None, config)  # hfkit's one rule: the call's, else the folder's
        pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else 0)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        rows = [ids[m.bool()].tolist() for ids, m in zip(input_ids, mask)]
        if not all(rows):
            raise UserInputError(
                "a prompt tokenized to no tokens: give it some text (or let the tokenizer add its BOS token)."
            )
        # transformers' limits: max_new_tokens, else max_length counts the prompt too; min_new_tokens holds eos off.
        new = [
            self._greedy(row, config.max_new_tokens if config.max_new_tokens is not None else
                         config.max_length - input_ids.shape[1], config.min_new_tokens or 0, set(eos), streamer)
            for row in rows
        ]  # fmt: skip
        longest = max(len(n) for n in new)
        out = torch.full((len(rows), input_ids.shape[1] + longest), pad, dtype=input_ids.dtype)
        out[:, : input_ids.shape[1]] = input_ids
        for i, tokens in enumerate(new):
            out[i, input_ids.shape[1] : input_ids.shape[1] + len(tokens)] = torch.tensor(tokens)
        return out

    def _empty_cache(self) -> list[np.ndarray]:
        """The key/value inputs of a prompt pass: every layer's cache, of length 0."""
        layers, heads, dim = (self._facts[k] for k in ("layers", "key_value_heads", "head_dim"))
        return [np.zeros((1, heads, 0, dim), dtype=np.float32) for _ in range(2 * layers)]

    def prompt_logits(self, ids: Any, request: Any = None) -> np.ndarray:
        """Logits at every position of one row of token ids ([1, length] -> [1, length, vocab]), from an empty
        cache: what scores a text (perplexity) or starts decoding."""
        ids = np.asarray(ids, dtype=np.int64)
        request = request or self.compiled.create_infer_request()
        feed = [ids, np.ones_like(ids), np.arange(ids.shape[1], dtype=np.int64)[None], *self._empty_cache()]
        return np.array(next(iter(request.infer(feed).values())))

    def _greedy(
        self, prompt: list[int], max_new_tokens: int, min_new_tokens: int, eos: set[int], streamer: Any
    ) -> list[int]:
        request = self.compiled.create_infer_request()
        past = self._empty_cache()
        ids, start, tokens = np.asarray([prompt], dtype=np.int64), 0, []
        if streamer is not None:
            streamer.put(torch.tensor([prompt]))
        while len(tokens) < max_new_tokens:
            length = start + ids.shape[1]
            outputs = request.infer(
                [
                    ids,
                    np.ones((1, length), dtype=np.int64),
                    np.arange(start, length, dtype=np.int64)[None],
                    *past,
                ]
            )
            values = list(outputs.values())
            logits = values[0][0, -1]
            if len(tokens) < min_new_tokens and eos:
                logits = logits.copy()
                logits[list(eos)] = -np.inf
            token = int(logits.argmax())
            tokens.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if token in eos:
                break
            past, start, ids = values[1:], length, np.asarray([[token]], dtype=np.int64)
        if streamer is not None:
            streamer.end()
        return tokens
