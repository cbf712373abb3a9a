"""Load what hfkit saves: one loader for dense, low-rank and bitsandbytes-quantized folders, one task kind.

Every model hfkit writes is a `save_pretrained` folder; what differs is how it must be rebuilt:

* dense: the Auto class of its task, `from_pretrained`;
* low-rank (``lowrank_ranks`` in config.json, written by hfkit.compress.lowrank): the factorized layers are
  built first (a subclass of the model class), then the weights load into them;
* bitsandbytes (``quantization_config`` with load_in_8bit / load_in_4bit): transformers reads the settings
  from config.json; hfkit keeps each 4-bit layer's state as loaded (so a later save is exact) and the
  generic CPU kernel for widths bitsandbytes' packed kernel cannot take (see `cpu_safe_4bit`);
* CPU int8 (``cpu_int8`` in config.json, written by hfkit.compress.cpu_int8): an ONNX Runtime graph,
  ``model.onnx``, run by `OnnxClassifier`, a torch Module called like the transformers model it came from;
* OpenVINO (``openvino`` in config.json, written by hfkit.compress.openvino): an OpenVINO IR,
  ``openvino_model.xml`` + ``.bin`` (float32 or NNCF int8), run by `OpenVinoClassifier`, called the same way;
* OpenVINO causal LM (``openvino_lm`` in config.json, written by hfkit.compress.openvino_lm): an IR with the
  key/value cache as explicit inputs, decoded greedily by `OpenVinoCausalLM`, whose `generate` takes
  transformers' arguments.
  A bfloat16 folder (hfkit.compress.bf16) is a dense folder: transformers reloads it in bfloat16 from its config.

`load_model` picks the path from config.json. `TaskKind` is the one name for a task: a Hub pipeline tag
(``text-classification``), with the Auto class, the architecture suffix and the PEFT task type it maps to;
older spellings ("sequence-classification", "causal-lm", PEFT's "SEQ_CLS") are accepted by `TaskKind.parse`.
This module imports only hfkit.errors and hfkit.modeling's path resolution and checks (data flows io -> data ->
trainers / compress -> hub).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch import nn
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PretrainedConfig, PreTrainedModel

from .errors import MissingInputError, UserInputError

# Path resolution ('wheel:<module>', local folder checks) stays in modeling.py, which imports no hfkit module.
from .modeling import check_model_weights, resolve_model_path

__all__ = [
    "LOWRANK_FIELD",
    "LowRankEmbedding",
    "LowRankLinear",
    "ONNX_FILE",
    "CPU_INT8_FIELD",
    "OnnxClassifier",
    "OPENVINO_FIELD",
    "OPENVINO_FILE",
    "OPENVINO_WEIGHTS",
    "OPENVINO_LM_FIELD",
    "OpenVinoCausalLM",
    "OpenVinoClassifier",
    "TaskKind",
    "apply_lowrank_structure",
    "compile_openvino",
    "cpu_safe_4bit",
    "is_bnb_quantized",
    "is_cpu_int8",
    "is_openvino",
    "is_openvino_lm",
    "load_lowrank",
    "load_model",
    "load_weights",
    "resolve_model_path",
]

# config.json field listing the factorized layers of a low-rank model: {qualified layer name: rank}.
LOWRANK_FIELD = "lowrank_ranks"
# config.json field of a CPU int8 folder (ONNX Runtime graph): export settings, parameter and weight-byte counts.
CPU_INT8_FIELD = "cpu_int8"
# The graph file of a CPU int8 folder.
ONNX_FILE = "model.onnx"
# config.json field of an OpenVINO folder (IR): export settings, parameter and weight-byte counts.
OPENVINO_FIELD = "openvino"
# config.json field of an OpenVINO causal-LM folder: the cache's shape, the weights' storage, the parameter count.
OPENVINO_LM_FIELD = "openvino_lm"
# The IR of an OpenVINO folder (its weights are the .bin beside it); optimum-intel's file name.
OPENVINO_FILE = "openvino_model.xml"
# The IR's weights: raw tensor bytes that the .xml addresses by offset (data, no code, unlike torch's .bin).
OPENVINO_WEIGHTS = "openvino_model.bin"
# Module attribute holding a 4-bit layer's quant state as loaded, before any CPU repacking.
ORIGINAL_QUANT_STATE = "_hfkit_original_quant_state"


class TaskKind(str, Enum):
    """What a model does, named by its Hub pipeline tag; knows its Auto class and PEFT task type."""

    TEXT_CLASSIFICATION = "text-classification"
    TEXT_GENERATION = "text-generation"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"
    FILL_MASK = "fill-mask"

    @property
    def pipeline_tag(self) -> str:
        """The Hub pipeline tag (the card's `pipeline_tag`)."""
        return self.value

    @property
    def auto_class_name(self) -> str:
        """Name of the transformers Auto class that loads this task's models."""
        return _TASK_FACTS[self][0]

    @property
    def auto_class(self) -> type:
        """The transformers Auto class that loads this task's models."""
        return getattr(transformers, self.auto_class_name)

    @property
    def architecture_suffix(self) -> str:
        """How config.architectures names end for this task, e.g. 'ForSequenceClassification'."""
        return _TASK_FACTS[self][1]

    @property
    def peft_task_type(self) -> str | None:
        """PEFT's TaskType value for this task (None where PEFT has none)."""
        return _TASK_FACTS[self][2]

    @classmethod
    def parse(cls, value: TaskKind | str) -> TaskKind:
        """A task from a pipeline tag, an older hfkit name or a PEFT TaskType; UserInputError otherwise."""
        if isinstance(value, cls):
            return value
        text = str(getattr(value, "value", value))
        for kind in cls:
            if text in (kind.value, kind.peft_task_type, *_ALIASES.get(kind, ())):
                return kind
        raise UserInputError(
            f"unknown task {text!r}; choose one of: {', '.join(k.value for k in cls)} (or a PEFT TaskType)."
        )

    @classmethod
    def from_config(cls, config: PretrainedConfig | dict) -> TaskKind:
        """The task of a saved model, from the first recognised name in config.architectures."""
        architectures = (config if isinstance(config, dict) else config.to_dict()).get("architectures") or []
        for arch in architectures:
            for kind in cls:
                if arch.endswith(kind.architecture_suffix):
                    return kind
        raise UserInputError(
            f"cannot tell the task from config.architectures={architectures}; pass task= one of: "
            f"{', '.join(k.value for k in cls)}."
        )


# task -> (Auto class, architecture suffix, PEFT TaskType value)
_TASK_FACTS = {
    TaskKind.TEXT_CLASSIFICATION: (
        "AutoModelForSequenceClassification",
        "ForSequenceClassification",
        "SEQ_CLS",
    ),
    TaskKind.TEXT_GENERATION: ("AutoModelForCausalLM", "ForCausalLM", "CAUSAL_LM"),
    TaskKind.TOKEN_CLASSIFICATION: ("AutoModelForTokenClassification", "ForTokenClassification", "TOKEN_CLS"),
    TaskKind.QUESTION_ANSWERING: ("AutoModelForQuestionAnswering", "ForQuestionAnswering", "QUESTION_ANS"),
    TaskKind.FILL_MASK: ("AutoModelForMaskedLM", "ForMaskedLM", None),
}
# Names used before TaskKind (hfkit.compress.quantize) that stay accepted.
_ALIASES = {
    TaskKind.TEXT_CLASSIFICATION: ("sequence-classification",),
    TaskKind.TEXT_GENERATION: ("causal-lm",),
}


# ----------------------------------------------------------------------------------------------- low-rank


class LowRankLinear(nn.Module):
    """A Linear in->out computed as up(down(x)): down is in->rank without bias, up is rank->out with the bias."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project to the rank-r space, then back out (plus the original bias)."""
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class LowRankEmbedding(nn.Module):
    """An embedding table V x d stored as V x rank rows (`embed`) and a rank -> d projection (`up`, no bias):
    ALBERT's factorized embedding, here filled from a truncated SVD of a trained table."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        rank: int,
        padding_idx: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.rank = num_embeddings, embedding_dim, rank
        self.padding_idx = padding_idx
        self.embed = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx, device=device, dtype=dtype)
        self.up = nn.Linear(rank, embedding_dim, bias=False, device=device, dtype=dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Look up the rank-r rows, then project them to the model's width."""
        return self.up(self.embed(input_ids))

    def full_weight(self) -> torch.Tensor:
        """The V x d table the factors stand for (float factors only). Not a `weight` attribute: code that finds
        one assumes a stored table (bitsandbytes' loading inspects every module's `weight`)."""
        return self.embed.weight @ self.up.weight.T

    def extra_repr(self) -> str:
        return (
            f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}, padding_idx={self.padding_idx}"
        )


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` in place of the submodule called `name`."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def apply_lowrank_structure(model: nn.Module, ranks: dict[str, int]) -> None:
    """Replace the named Linear layers by (untrained) LowRankLinear of the given ranks, and named embedding
    tables by LowRankEmbedding, ready to load weights."""
    for name, rank in ranks.items():
        try:
            old = model.get_submodule(name)
        except AttributeError as e:
            raise ValueError(
                f"{LOWRANK_FIELD} names layer {name!r}, which {type(model).__name__} does not have: "
                "load with the model class the folder was saved from (model_class=...)."
            ) from e
        if isinstance(old, (LowRankLinear, LowRankEmbedding)):
            continue  # already built, e.g. the config was copied from a factorized model
        if isinstance(old, nn.Embedding):
            if not 1 <= rank <= min(old.num_embeddings, old.embedding_dim):
                raise ValueError(
                    f"{LOWRANK_FIELD}[{name!r}] = {rank} is outside 1..{min(old.num_embeddings, old.embedding_dim)}."
                )
            replace_module(model, name, LowRankEmbedding(
                old.num_embeddings, old.embedding_dim, rank, old.padding_idx, old.weight.device, old.weight.dtype
            ))  # fmt: skip
            continue
        if not isinstance(old, nn.Linear):
            raise ValueError(
                f"{LOWRANK_FIELD} names {name!r}, a {type(old).__name__}, not an nn.Linear or nn.Embedding."
            )
        if not 1 <= rank <= min(old.in_features, old.out_features):
            raise ValueError(
                f"{LOWRANK_FIELD}[{name!r}] = {rank} is outside 1..{min(old.in_features, old.out_features)}."
            )
        new = LowRankLinear(
            old.in_features, old.out_features, rank, old.bias is not None, old.weight.device, old.weight.dtype
        )
        replace_module(model, name, new)


# One subclass per model class, built on first use: from_pretrained then handles dtype, device_map, shards,
# tied weights and key renames exactly as for the dense model, because the factorized layers exist (with
# the saved shapes) before the weights are loaded.
_LOWRANK_CLASSES: dict[type, type] = {}


def _lowrank_class(base: type) -> type:
    if base not in _LOWRANK_CLASSES:

        def __init__(self, config, *args, **kwargs):
            base.__init__(self, config, *args, **kwargs)
            apply_lowrank_structure(self, getattr(config, LOWRANK_FIELD, None) or {})

        # Same name as the base: save_pretrained writes it to config.architectures.
        _LOWRANK_CLASSES[base] = type(
            base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__}
        )
    return _LOWRANK_CLASSES[base]


def load_lowrank(
    folder: str | os.PathLike, model_class: type = transformers.AutoModelForSequenceClassification, **kwargs
) -> PreTrainedModel:
    """Rebuild a model saved with factorized layers (from save_lowrank or a Trainer checkpoint) and load it."""
    config = AutoConfig.from_pretrained(folder, trust_remote_code=kwargs.get("trust_remote_code", False))
    if not getattr(config, LOWRANK_FIELD, None):
        raise ValueError(
            f"{folder} has no {LOWRANK_FIELD} in its config.json: it is not a factorized model; "
            f"load it with {getattr(model_class, '__name__', 'the model class')}.from_pretrained."
        )
    base = model_class
    if not issubclass(model_class, PreTrainedModel):
        # An Auto* class: pick the concrete class for this config the way Auto*.from_pretrained does.
        from transformers.models.auto.auto_factory import _get_model_class

        try:
            base = _get_model_class(config, model_class._model_mapping)
        except (KeyError, AttributeError) as e:
            raise ValueError(
                f"{getattr(model_class, '__name__', model_class)} has no model for config type "
                f"{type(config).__name__}: pass the model class the folder was saved from."
            ) from e
    return _lowrank_class(base).from_pretrained(folder, config=config, **kwargs)


# ----------------------------------------------------------------------------------------------- bitsandbytes


def is_bnb_quantized(config: PretrainedConfig | dict) -> bool:
    """True when a config (or config.json dict) says its weights are stored 8- or 4-bit by bitsandbytes."""
    quant = (config if isinstance(config, dict) else config.to_dict()).get("quantization_config")
    if quant is not None and not isinstance(quant, dict):
        quant = quant.to_dict()
    return bool(quant and (quant.get("load_in_8bit") or quant.get("load_in_4bit")))


def default_device_map() -> dict[str, int | str]:
    """Where bitsandbytes models load: the GPU when there is one (all of the model on it), else the CPU."""
    # Offloading a part to the CPU needs llm_int8_enable_fp32_cpu_offload and is not worth it for hfkit's models.
    return {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}


def cpu_safe_4bit(model: nn.Module) -> int:
    """Keep 4-bit layers whose width bitsandbytes' fast CPU kernel cannot pack on its generic path.

    On AVX512-BF16 CPUs bitsandbytes repacks a 4-bit weight on its first eval forward and asserts that the
    output width is a multiple of 32 and the input width a multiple of the quantization block (64), so a
    rank-4 low-rank factor fails. Those layers keep the generic kernel instead; returns how many were switched.
    """
    import bitsandbytes as bnb

    switched = 0
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        state = getattr(module.weight, "quant_state", None)
        blocksize = getattr(state, "blocksize", 64) or 64
        if module.out_features % 32 or module.in_features % blocksize:
            module.support_avx512bf16_for_cpu = False
            switched += 1
    return switched


def _remember_quant_states(model: nn.Module) -> None:
    # A shallow copy is enough: the CPU repacking replaces the state's attributes, it does not edit tensors.
    import bitsandbytes as bnb

    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, bnb.nn.Linear4bit) and state is not None:
            setattr(module, ORIGINAL_QUANT_STATE, copy.copy(state))


# ----------------------------------------------------------------------------------------------- ONNX Runtime


def is_cpu_int8(config: PretrainedConfig | dict) -> bool:
    """True when a config (or config.json dict) belongs to a CPU int8 folder (an ONNX Runtime graph)."""
    return bool((config if isinstance(config, dict) else config.to_dict()).get(CPU_INT8_FIELD))


class _ExportedClassifier(nn.Module):
    """What the CPU runtimes' classifiers share: called like the transformers model they came from
    (`model(input_ids=..., attention_mask=...)` returns a `SequenceClassifierOutput` with float32 torch logits),
    no torch parameters, and `num_parameters()` / `get_memory_footprint()` recorded at export in `_facts`.
    A subclass sets `input_names` and `_facts` and runs one feed of int64 arrays in `_run`."""

    main_input_name = "input_ids"
    input_names: list[str]
    _facts: dict

    @property
    def device(self) -> torch.device:
        """Always the CPU."""
        return torch.device("cpu")

    def _run(self, feed: dict[str, Any]) -> Any:
        """The runtime's logits (a numpy array) for one feed."""
        raise TypeError(f"{type(self).__name__} must define _run")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ):
        """Logits for one tokenized batch (token_type_ids default to 0 and the mask to all ones, as in BERT)."""
        from transformers.modeling_outputs import SequenceClassifierOutput

        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {}
        for name in self.input_names:
            value = given.get(name)
            if value is None:
                value = (
                    torch.ones_like(input_ids) if name == "attention_mask" else torch.zeros_like(input_ids)
                )
            feed[name] = value.detach().cpu().to(torch.int64).numpy()
        return SequenceClassifierOutput(logits=torch.from_numpy(self._run(feed)))

    def num_parameters(self) -> int:
        """Parameters of the float model the graph was exported from (each one is stored once, int8 or float)."""
        return int(self._facts["parameters"])

    def get_memory_footprint(self) -> int:
        """Bytes of the graph's weights, as recorded at export (int8 tables plus their float scales)."""
        return int(self._facts["weight_bytes"])


class OnnxClassifier(_ExportedClassifier):
    """A sequence classifier run by ONNX Runtime on the CPU, called like the transformers model it came from.

    `model(input_ids=..., attention_mask=...)` returns a `SequenceClassifierOutput` with float32 torch logits,
    so hfkit's evaluation and timing code takes it like any classifier. It holds no torch parameters: the
    weights live in the ONNX Runtime session. `num_parameters()` is the exported float model's count and
    `get_memory_footprint()` the bytes of the graph's weights (int8 tables plus their float scales), both
    recorded at export time.
    """

    def __init__(self, folder: str | os.PathLike, config: PretrainedConfig, num_threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime  # noqa: F401  (installed? the error below says how)
        except ImportError as err:
            raise UserInputError(
                f"{folder} is a CPU int8 (ONNX Runtime) folder and onnxruntime is not installed: "
                'pip install "hfkit[onnx]".'
            ) from err
        self.path = os.path.join(os.fspath(folder), ONNX_FILE)
        if not os.path.isfile(self.path):
            raise MissingInputError(
                f"{self.path} not found: {folder} is not a complete CPU int8 folder; export it again."
            )
        self.config = config
        self._facts = getattr(config, CPU_INT8_FIELD)
        # Same thread count as torch (OMP_NUM_THREADS / torch.set_num_threads), so the two compare fairly.
        self.num_threads = num_threads or torch.get_num_threads()
        self.session = self._session()
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _session(self, profile_prefix: str | None = None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.num_threads, 1
        if profile_prefix:
            options.enable_profiling, options.profile_file_prefix = True, profile_prefix
        # The session-time rewrites the export measured as slower (hfkit.compress.cpu_int8); none in older folders.
        return ort.InferenceSession(
            self.path, options, providers=["CPUExecutionProvider"],
            disabled_optimizers=list(self._facts.get("ort_disabled_optimizers", [])),
        )  # fmt: skip

    def op_times(self, batch: Mapping[str, Any], runs: int = 3) -> list[tuple[str, float]]:
        """Where a forward's time goes: ms per forward by operator type, largest first, from ONNX Runtime's own
        profiler on a session built like this one (same threads and graph rewrites). One warm-up run first
        (ONNX Runtime prepacks its int8 weights then) is left out."""
        import collections
        import tempfile

        feed = {n: torch.as_tensor(batch[n]).to(torch.int64).numpy() for n in self.input_names}
        with tempfile.TemporaryDirectory() as work:
            session = self._session(os.path.join(work, "ort"))
            for _ in range(runs + 1):
                session.run(None, feed)
            with open(session.end_profiling()) as f:
                events = json.load(f)
        first = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
        totals: collections.Counter = collections.Counter()
        for e in events:
            if (
                e.get("cat") == "Node"
                and e["name"].endswith("_kernel_time")
                and e["ts"] > first["ts"] + first["dur"]
            ):
                totals[e["args"]["op_name"]] += e["dur"]
        return [(op, us / 1000 / runs) for op, us in totals.most_common()]

    def _run(self, feed: dict[str, Any]) -> Any:
        (logits,) = self.session.run(None, feed)
        return logits


# ----------------------------------------------------------------------------------------------- OpenVINO


def is_openvino(config: PretrainedConfig | dict) -> bool:
    """True when a config (or config.json dict) belongs to an OpenVINO folder (an IR)."""
    return bool((config if isinstance(config, dict) else config.to_dict()).get(OPENVINO_FIELD))


def compile_openvino(model: Any, num_threads: int | None = None) -> Any:
    """An OpenVINO model (or IR path) compiled for the CPU with torch's thread count, one stream (latency)."""
    import openvino as ov

    # OpenVINO picks its inference precision itself: bf16 on CPUs with AMX/AVX512-BF16, float32 elsewhere.
    settings = {"INFERENCE_NUM_THREADS": num_threads or torch.get_num_threads(), "NUM_STREAMS": 1}
    return ov.Core().compile_model(model, "CPU", settings)


class OpenVinoClassifier(_ExportedClassifier):
    """A sequence classifier run by OpenVINO on the CPU, called like the transformers model it came from.

    Like `OnnxClassifier`: `model(input_ids=..., attention_mask=...)` returns a `SequenceClassifierOutput` with
    float32 torch logits; no torch parameters; `num_parameters()` and `get_memory_footprint()` (bytes of the IR's
    weight constants) were recorded at export.
    """

    def __init__(self, folder: str | os.PathLike, config: PretrainedConfig, num_threads: int | None = None):
        super().__init__()
        try:
            import openvino  # noqa: F401
        except ImportError as err:
            raise UserInputError(
                f'{folder} is an OpenVINO folder and openvino is not installed: pip install "hfkit[openvino]".'
            ) from err
        path = os.path.join(os.fspath(folder), OPENVINO_FILE)
        if not os.path.isfile(path):
            raise MissingInputError(
                f"{path} not found: {folder} is not a complete OpenVINO folder; export it again."
            )
        self.compiled = compile_openvino(path, num_threads)
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.config = config
        self._facts = getattr(config, OPENVINO_FIELD)

    def _run(self, feed: dict[str, Any]) -> Any:
        # share_outputs=False (the default): the logits are copied out of the request, not overwritten by the next call.
        return self.compiled(feed)[0]


def is_openvino_lm(config: PretrainedConfig | dict | str | os.PathLike) -> bool:
    """True for a causal-LM folder exported by hfkit.compress.openvino_lm: takes its config, config.json dict or
    the folder itself (False for a folder without config.json)."""
    if isinstance(config, (str, os.PathLike)):
        folder = Path(config)
        if not (folder / "config.json").is_file():
            return False
        config = _read_config(folder)
    return bool((config if isinstance(config, dict) else config.to_dict()).get(OPENVINO_LM_FIELD))


class OpenVinoCausalLM:
    """A causal LM exported by `hfkit.compress.openvino_lm.export_openvino_lm`, decoded greedily by OpenVINO on
    the CPU.

    Called like a transformers model where hfkit's generation path needs it: `generate(input_ids=...,
    attention_mask=..., generation_config=..., streamer=...)` decodes a left-padded batch together (one IR call
    per new token for all rows) and returns prompt + new ids as a torch tensor, rows that ended early filled with
    the pad id; `device`, `generation_config`, `eval()` and `forward`'s signature are there. Greedy only:
    sampling, beams, repetition penalty and assisted decoding are refused with the fix.
    """

    def __init__(self, folder: str | os.PathLike, num_threads: int | None = None):
        try:
            import openvino  # noqa: F401
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
        self.compiled = compile_openvino(path, num_threads)
        # Exports before 2026-12-08 have no input naming the positions to score (their IR returns every
        # position's logits); they decode the same, with a larger prompt pass.
        self._picks_positions = bool(self._facts.get("logits_positions"))

    def eval(self) -> OpenVinoCausalLM:
        return self

    def num_parameters(self) -> int:
        """Parameters of the transformers model the IR was exported from."""
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
        **kwargs: Any,
    ) -> torch.Tensor:
        """Greedy decoding of a left-padded batch, returned like transformers' generate (prompt + new ids);
        keyword arguments that are generation settings (max_new_tokens=30) override `generation_config`'s."""
        config = copy.deepcopy(generation_config or self.generation_config)
        unsupported = config.update(**kwargs)  # what is not a GenerationConfig field comes back
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
        # transformers' rule: the call's generation config, else the model's own.
        eos = config.eos_token_id if config.eos_token_id is not None else self.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if eos else 0)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        if input_ids.shape[1] == 0 or not bool(mask.sum(dim=1).all()):
            raise UserInputError(
                "a prompt tokenized to no tokens: give it some text (or let the tokenizer add its BOS token)."
            )
        if streamer is not None and input_ids.shape[0] > 1:
            raise ValueError("a streamer prints one sequence: stream a batch of one prompt.")
        # transformers' limits: max_new_tokens, else max_length counts the prompt too; min_new_tokens holds eos off.
        limit = (
            config.max_new_tokens
            if config.max_new_tokens is not None
            else config.max_length - input_ids.shape[1]
        )
        new = self._greedy(
            input_ids.cpu().numpy().astype(np.int64), mask.cpu().numpy().astype(np.int64), limit,
            config.min_new_tokens or 0, eos, pad, streamer,
        )  # fmt: skip
        return torch.cat([input_ids.cpu(), torch.from_numpy(new).to(input_ids.dtype)], dim=1)

    def _empty_cache(self, rows: int) -> list[np.ndarray]:
        """The key/value inputs of a prompt pass: every layer's cache, of length 0."""
        layers, heads, dim = (self._facts[k] for k in ("layers", "key_value_heads", "head_dim"))
        return [np.zeros((rows, heads, 0, dim), dtype=np.float32) for _ in range(2 * layers)]

    def _infer(self, request: Any, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past: list,
               scored: np.ndarray) -> list[np.ndarray]:  # fmt: skip
        """One IR call: logits at the `scored` positions of `ids` ([rows, len(scored), vocab]), then the grown cache."""
        picks = [scored] if self._picks_positions else []
        values = list(request.infer([ids, mask, positions, *picks, *past]).values())
        logits = values[0] if self._picks_positions else values[0][:, scored]
        return [np.asarray(logits), *values[1:]]

    def prompt_logits(self, ids: Any, request: Any = None) -> np.ndarray:
        """Logits at every position of one row of token ids ([1, length] -> [1, length, vocab]), from an empty
        cache: what scores a text (perplexity)."""
        ids = np.asarray(ids, dtype=np.int64)
        positions = np.arange(ids.shape[1], dtype=np.int64)
        request = request or self.compiled.create_infer_request()
        logits, *_ = self._infer(
            request, ids, np.ones_like(ids), positions[None], self._empty_cache(1), positions
        )
        return logits

    def _greedy(
        self, ids: np.ndarray, mask: np.ndarray, max_new_tokens: int, min_new_tokens: int, eos: list[int],
        pad: int, streamer: Any,
    ) -> np.ndarray:  # fmt: skip
        """The new tokens of every row ([rows, steps]): all rows step together; a row past its eos gets `pad`."""
        request = self.compiled.create_infer_request()
        rows = ids.shape[0]
        # Left padding: a row's first real token is its position 0 (pads get 0 too; the mask hides them).
        positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
        past, done, new = self._empty_cache(rows), np.zeros(rows, dtype=bool), []
        last = np.asarray([ids.shape[1] - 1], dtype=np.int64)
        if streamer is not None:
            streamer.put(torch.from_numpy(ids))
        while len(new) < max_new_tokens and not done.all():
            logits, *past = self._infer(request, ids, mask, positions, past, last)
            logits = logits[:, -1]
            if len(new) < min_new_tokens and eos:
                logits = logits.copy()
                logits[:, eos] = -np.inf
            token = np.where(done, pad, logits.argmax(axis=-1)).astype(np.int64)
            new.append(token)
            if streamer is not None:
                streamer.put(torch.from_numpy(token))
            done |= np.isin(token, eos)
            ids, mask = token[:, None], np.concatenate([mask, np.ones((rows, 1), dtype=np.int64)], axis=1)
            positions, last = positions[:, -1:] + 1, np.zeros(1, dtype=np.int64)
        if streamer is not None:
            streamer.end()
        return np.stack(new, axis=1) if new else np.zeros((rows, 0), dtype=np.int64)


def float_classifier_config(
    folder: str, stage: str, model_types: tuple[str, ...] | None = None
) -> PretrainedConfig:
    """The config of a float sequence-classifier folder, checked before a CPU stage exports it (cpu_int8,
    openvino, bf16): a folder already quantized or exported is refused, and so is another model type than
    `model_types` (None: any) or a model that is not a sequence classifier."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise MissingInputError(
            f"{folder}/config.json not found: pass a classifier folder written by save_pretrained."
        )
    config = AutoConfig.from_pretrained(folder)
    done = (
        "already a CPU int8 export" if is_cpu_int8(config)
        else "already an OpenVINO export" if is_openvino(config)
        else "already quantized with bitsandbytes" if is_bnb_quantized(config)
        else None
    )  # fmt: skip
    if done:
        raise UserInputError(
            f"{folder} is {done}: already quantized or exported folders are not {stage}'s input; pass the float "
            "model folder it came from."
        )
    if model_types is not None and config.model_type not in model_types:
        raise UserInputError(
            f"{stage} does not support model_type {config.model_type!r}; it exports encoder classifiers of type "
            f"{', '.join(model_types)}; the int8 / nf4 (bitsandbytes) stages take other models."
        )
    if model_types is not None and TaskKind.from_config(config) is not TaskKind.TEXT_CLASSIFICATION:
        raise UserInputError(
            f"{stage} exports sequence classifiers; {folder} has architectures={config.architectures}."
        )
    return config


# ----------------------------------------------------------------------------------------------- one loader


def load_weights(folder: str | os.PathLike, task: TaskKind | str, **kwargs: Any) -> PreTrainedModel:
    """The model of a saved folder (dense, low-rank, bitsandbytes, CPU int8, OpenVINO) in eval mode; kwargs go to from_pretrained.

    A float folder loads quantized when kwargs carry a `quantization_config` (hfkit.compress.quantize does).
    A CPU int8 folder loads as an `OnnxClassifier` (kwarg `num_threads`: ONNX Runtime's thread count), an
    OpenVINO classifier as an `OpenVinoClassifier` and an OpenVINO causal LM as an `OpenVinoCausalLM` (same
    kwarg); a bfloat16 folder in bfloat16 (its config's dtype).
    """
    folder = os.fspath(folder)
    task = TaskKind.parse(task)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=kwargs.get("trust_remote_code", False))
    if is_cpu_int8(config):
        if task is not TaskKind.TEXT_CLASSIFICATION:
            raise UserInputError(
                f"{folder} is a CPU int8 (ONNX Runtime) sequence classifier; it cannot load as {task.value}."
            )
        return OnnxClassifier(folder, config, kwargs.get("num_threads")).eval()
    if is_openvino(config):
        if task is not TaskKind.TEXT_CLASSIFICATION:
            raise UserInputError(
                f"{folder} is an OpenVINO sequence classifier; it cannot load as {task.value}."
            )
        return OpenVinoClassifier(folder, config, kwargs.get("num_threads")).eval()
    if is_openvino_lm(config):
        if task is not TaskKind.TEXT_GENERATION:
            raise UserInputError(f"{folder} is an OpenVINO causal LM; it cannot load as {task.value}.")
        return OpenVinoCausalLM(folder, kwargs.get("num_threads"))
    check_model_weights(folder)
    quantized = is_bnb_quantized(config) or kwargs.get("quantization_config") is not None
    if quantized:
        kwargs.setdefault("device_map", default_device_map())
    if getattr(config, LOWRANK_FIELD, None):
        # Factorized layers must exist before the weights load; quantized, their two Linears are like any other.
        model = load_lowrank(folder, task.auto_class, **kwargs)
    else:
        model = task.auto_class.from_pretrained(folder, **kwargs)
    model.eval()
    if quantized:
        _remember_quant_states(model)  # the exact state a later save must write back
        cpu_safe_4bit(model)
    return model


def load_model(
    folder: str | os.PathLike, task: TaskKind | str | None = None, trust_remote_code: bool = False, **kwargs
) -> tuple[PreTrainedModel, Any]:
    """Load (model, tokenizer) from any folder hfkit saves (dense, low-rank, bitsandbytes, CPU int8, OpenVINO), in eval mode.

    `task` (a TaskKind or pipeline tag such as 'text-classification') overrides config.architectures. Also
    takes 'wheel:<module>'. trust_remote_code stays off unless you turn it on.
    """
    folder = Path(resolve_model_path(os.fspath(folder), trust_remote_code))
    if not (folder / "config.json").is_file():
        raise MissingInputError(f"{folder}/config.json not found: pass a folder written by save_pretrained.")
    kind = TaskKind.parse(task) if task is not None else TaskKind.from_config(_read_config(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    model = load_weights(folder, kind, trust_remote_code=trust_remote_code, **kwargs)
    return model, tokenizer


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserInputError(f"{folder}/config.json is not valid JSON ({err}); re-save the model.") from err
