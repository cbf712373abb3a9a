"""The model card of a saved model folder, built with huggingface_hub's ModelCard / ModelCardData.

The facts come from what the run recorded next to the model (documented report files, read as written):

* ``config.json``: architecture, task, labels, quantization / low-rank / trimmed-vocabulary metadata;
* ``run.json`` (written by the recipes at the start of a run, hfkit.runtime): every configured setting
  (learning rate, epochs, batch size, temperature/alpha, student layers, teacher, text column) and the data
  files; the card adds their rows and size and takes its usage example from the validation file's text;
* ``eval_report.json`` (ClassifierTrainer), ``distill_report.json`` (distill recipe): validation metrics,
  base model, teacher; ``trainer_state.json`` (Trainer): steps run and the final training loss;
* ``compression_report.json`` in the parent folder (compress recipe, one sub-folder per stage): the
  measured figures of every stage of this model's chain; the data and construction then come from the
  compressed student's own folder.

Explicit `CardInfo` fields win over recorded ones. Metadata is valid model-card YAML: base_model, datasets,
metrics with their values (model-index), pipeline_tag, library_name, license.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import BitsAndBytesConfig

from ..errors import UserInputError
from ..io import (
    CPU_INT8_FIELD,
    LOWRANK_FIELD,
    ONNX_FILE,
    OPENVINO_FIELD,
    OPENVINO_FILE,
    OPENVINO_LM_FIELD,
    OPENVINO_WEIGHTS,
    TaskKind,
)
from ..modeling import display_name
from ..reports import (
    CompressionRecord,
    DistillRecord,
    EvalRecord,
    format_metric,
    markdown_table,
    percent,
)

__all__ = ["CardInfo", "collect_card_info", "model_card", "write_model_card"]

CARD_FILE = "README.md"
LOWRANK_FILE = "lowrank_config.json"  # extra low-rank metadata some tools write; uploaded when present
RUN_FILE = "run.json"  # what made a run: hfkit.runtime.start_run writes it in every training output_dir
_TABLE_SUFFIXES = {".tsv": "\t", ".csv": ","}

# Trainer timing entries are not model quality.
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "step", "total_flos")
# Configured arguments shown as training hyper-parameters (name in the run record -> label on the card),
# when set to something other than "off".
_HYPER = {
    "learning_rate": "learning rate",
    "num_train_epochs": "epochs",
    "max_steps": "max steps",
    "per_device_train_batch_size": "batch size per device",
    "gradient_accumulation_steps": "gradient accumulation steps",
    "lr_scheduler_type": "learning-rate schedule",
    "warmup_ratio": "warmup ratio",
    "warmup_steps": "warmup steps",
    "weight_decay": "weight decay",
    "max_length": "max sequence length",
    "seed": "seed",
}
_DISTILL_HYPER = {"temperature": "temperature", "alpha": "alpha"}
_OFF = (None, 0, -1, "", [], False)


@dataclass
class CardInfo:
    """Facts for the model card. Unset (None) fields are filled from the model folder where it records them."""

    model_name: str | None = field(
        default=None, metadata={"help": "Card title and model-index name; default: the repo or folder name."}
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the model this one was trained from (e.g. sentence-transformers/all-MiniLM-L6-v2); "
            "default: the model recorded in eval_report.json. Local paths are named in the text only."
        },
    )
    license: str | None = field(
        default=None, metadata={"help": "Hub license id, e.g. apache-2.0 or mit (check the base model's)."}
    )
    datasets: list[str] | None = field(
        default=None,
        metadata={
            "aliases": ["--dataset"],
            "help": "Hub ids of the training datasets, e.g. stanfordnlp/sst2.",
        },
    )
    language: list[str] | None = field(default=None, metadata={"help": "Language codes, e.g. en."})
    method: str | None = field(
        default=None,
        metadata={
            "help": "How the model was trained, e.g. 'fine-tuning' or 'distillation'; default: detected from "
            "the reports in the folder."
        },
    )
    teacher: str | None = field(default=None, metadata={"help": "Teacher model of a distillation."})
    temperature: float | None = field(default=None, metadata={"help": "Distillation softmax temperature."})
    alpha: float | None = field(default=None, metadata={"help": "Distillation weight of the soft (KL) term."})
    tags: list[str] | None = field(
        default=None, metadata={"help": "Extra Hub tags (method and task tags are added automatically)."}
    )
    metrics: dict | str | None = field(
        default=None,
        metadata={"help": "Evaluation metrics, as JSON on the command line: '{\"accuracy\": 0.91}'."},
    )
    hyperparameters: dict | str | None = field(
        default=None,
        metadata={"help": "Training hyper-parameters to list, as JSON: '{\"learning_rate\": 5e-5}'."},
    )

    def __post_init__(self):
        for name in ("metrics", "hyperparameters"):
            value = getattr(self, name)
            if isinstance(value, str):  # from the command line
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as err:
                    raise UserInputError(
                        f"{name} must be a JSON object like '{{\"accuracy\": 0.9}}', got {value!r}: {err}"
                    ) from err
                setattr(self, name, value)
            if value is not None and not isinstance(value, dict):
                raise UserInputError(
                    f"{name} must be a mapping of name to value, got {type(value).__name__}."
                )


# ----------------------------------------------------------------------------------------------- facts


def read_json(path: Path) -> dict | None:
    """A JSON object file, None when missing; a clear error when it is not valid JSON."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path} is not valid JSON ({err}); fix or delete it.") from err
    return data if isinstance(data, dict) else None


def _quality_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Numeric quality metrics, without the Trainer's timing entries and without `prefix`."""
    out = {}
    for key, value in metrics.items():
        if not key.startswith(prefix) or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = key[len(prefix) :]
        if not any(name == n or name.endswith("_" + n) for n in _NOT_METRICS):
            out[name] = value
    return out


def _file_facts(path: str) -> dict[str, Any]:
    """Rows (of a table or JSON-lines file: lines after the header) and bytes of a data file that exists here."""
    facts: dict[str, Any] = {"source": path}
    if os.path.isfile(path):
        facts["bytes"] = os.path.getsize(path)
        suffix = Path(path).suffix
        if suffix in _TABLE_SUFFIXES or suffix in (".jsonl", ".txt"):
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = sum(1 for line in f if line.strip())
            facts["rows"] = lines - (suffix in _TABLE_SUFFIXES)
    return facts


def _example_texts(path: str | None, column: str | None, n: int = 2) -> list[str]:
    """The first texts of a local data file's text column: the card's usage example runs on them."""
    if not path or not column or not os.path.isfile(path):
        return []
    suffix = Path(path).suffix
    texts: list[str] = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        if suffix in _TABLE_SUFFIXES:
            rows = csv.DictReader(f, delimiter=_TABLE_SUFFIXES[suffix])
        elif suffix == ".jsonl":
            rows = (json.loads(line) for line in f if line.strip())
        else:
            return []
        for row in rows:
            text = row.get(column) if isinstance(row, dict) else None
            if isinstance(text, str) and text.strip():
                texts.append(text.strip()[:300])
            if len(texts) == n:
                break
    return texts


def _read_run(folder: Path, facts: _Facts) -> dict | None:
    """Fill the facts a run.json gives (settings, data files, example texts); return its settings."""
    record = read_json(folder / RUN_FILE)
    if record is None:
        return None
    config = record.get("config") or {}
    files = {name: entry.get("path") for name, entry in (record.get("data_files") or {}).items()}
    train = files.get("train_file") or config.get("train_file") or config.get("dataset_name")
    validation = files.get("validation_file") or config.get("validation_file")
    if train:
        facts.data["train"] = _file_facts(train) if train == files.get("train_file") else {"source": train}
    if validation:
        facts.data["validation"] = _file_facts(validation)
    elif config.get("validation_split"):
        facts.data["validation"] = {"held_out": config["validation_split"]}
    text_column = config.get("text_column")
    facts.examples = _example_texts(validation, text_column) or _example_texts(
        files.get("train_file"), text_column
    )
    return config


@dataclass
class _Facts:
    """Everything the card says, gathered from the folder (and its compression report)."""

    info: CardInfo
    config: dict
    task: TaskKind | None
    configured: dict[str, Any] = field(default_factory=dict)
    data: dict[str, dict] = field(default_factory=dict)  # split -> {source, rows, bytes}
    examples: list[str] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)  # compression report rows of this model's chain
    reference: dict | None = None  # the compression report's student row
    evaluated_on: str | None = None
    num_examples: int | None = None
    parameters: int | None = None
    trained: dict[str, Any] = field(default_factory=dict)  # from trainer_state.json: steps, final loss


def _read_record(cls, folder: Path):
    """The record a run wrote into folder (`hfkit.reports`: EvalRecord, DistillRecord, CompressionRecord), or
    None; a file that is not valid JSON is one clear error."""
    try:
        return cls.read(folder)
    except ValueError as err:
        raise UserInputError(str(err)) from err


def _compression_rows(folder: Path) -> tuple[list[dict], dict | None, CompressionRecord | None]:
    """This folder's chain in the parent's compression_report.json: (rows of its stages, student row, report)."""
    report = _read_record(CompressionRecord, folder.parent)
    if not report:
        return [], None, None
    rows = report.models
    here = os.path.realpath(folder)
    own = next((r for r in rows if r.get("folder") and os.path.realpath(r["folder"]) == here), None)
    own = own or next((r for r in rows if r.get("name") == folder.name and r.get("chain")), None)
    if own is None:
        return [], None, None
    chain = own["chain"].split(">")
    prefixes = [">".join(chain[: i + 1]) for i in range(len(chain))]
    stages = [next((r for r in rows if r.get("chain") == p), None) for p in prefixes]
    student = next((r for r in rows if r.get("name") == "student"), None)
    return [s for s in stages if s is not None], student, report


def _gather(folder: Path, overrides: CardInfo | None) -> _Facts:
    config = read_json(folder / "config.json")
    if config is None:
        raise UserInputError(
            f"{folder} has no config.json: it is not a saved Transformers model. "
            "Save it with model.save_pretrained(folder) first."
        )
    try:
        task = TaskKind.from_config(config)
    except UserInputError:
        task = None
    found = CardInfo()
    eval_report = _read_record(EvalRecord, folder)
    distill_report = _read_record(DistillRecord, folder)
    state = read_json(folder / "trainer_state.json")
    stages, reference, compression = _compression_rows(folder)
    facts = _Facts(info=found, config=config, task=task)
    student_path = None
    if stages:
        settings = compression.settings.get("CompressArguments", {})
        student_path = settings.get("model_name_or_path") or compression.model
    # A compressed stage was not trained here: its data and construction are the compressed student's.
    configured = _read_run(folder, facts)
    if configured is None and student_path and os.path.isdir(student_path):
        configured = _read_run(Path(student_path), facts)

    metrics: dict[str, float] = {}
    if state is not None:
        history = state.get("log_history") or []
        evals = [e for e in history if any(k.startswith("eval_") for k in e)]
        metrics = _quality_metrics(evals[-1], "eval_") if evals else {}
        # Trainer records these as configured (epochs, batch size) or counted (steps), never as logged values.
        for key, label in (
            ("num_train_epochs", "epochs"),
            ("global_step", "optimizer steps"),
            ("train_batch_size", "batch size per device"),
        ):
            if state.get(key) is not None:
                facts.trained[label] = state[key]
        losses = [e["train_loss"] for e in history if "train_loss" in e]
        if losses:
            facts.trained["final training loss"] = losses[-1]
    if distill_report is not None:
        found.method = "distillation"
        for key in ("teacher", "temperature", "alpha"):
            if getattr(distill_report, key) is not None:
                setattr(found, key, getattr(distill_report, key))
        student = distill_report.row("student")
        if student and not metrics:
            metrics = {
                k: getattr(student, k)
                for k in ("accuracy", "f1")
                if isinstance(getattr(student, k), int | float)
            }
        facts.evaluated_on = distill_report.data
        facts.num_examples = distill_report.validation_examples
    elif eval_report is not None or state is not None:
        found.method = "fine-tuning"
    if eval_report is not None:
        metrics = _quality_metrics(eval_report.metrics) or metrics
        if eval_report.model:
            found.base_model = eval_report.model
        facts.evaluated_on = eval_report.data or facts.evaluated_on
        facts.num_examples = eval_report.num_examples or facts.num_examples
        facts.parameters = eval_report.parameters.get("total")
    if stages:
        own = stages[-1]
        metrics = {k: own[k] for k in ("accuracy", "f1") if isinstance(own.get(k), int | float)}
        facts.stages, facts.reference = stages, reference
        facts.evaluated_on = compression.data
        facts.num_examples = compression.validation_examples
        facts.parameters = own.get("parameters")
        found.method = found.method or "compression"
        found.base_model = found.base_model or student_path
        if not facts.evaluated_on and "validation" in facts.data:
            facts.evaluated_on = facts.data["validation"].get("source")
    if facts.parameters is None and config.get(OPENVINO_LM_FIELD):  # an export recorded its source's count
        facts.parameters = config[OPENVINO_LM_FIELD].get("parameters")
    if configured is not None:
        facts.configured = configured
        teacher = facts.configured.get("teacher_name_or_path") or facts.configured.get("teachers")
        if teacher and found.teacher is None and not stages:
            found.teacher, found.method = teacher, "distillation"
        for key in ("temperature", "alpha"):
            if found.method == "distillation" and getattr(found, key) is None:
                setattr(found, key, facts.configured.get(key))
        if found.base_model is None:
            found.base_model = facts.configured.get("model_name_or_path") or facts.configured.get(
                "student_name_or_path"
            )
    found.metrics = metrics or None
    hyper = {}
    if not stages:  # a compressed stage was not trained by this run: its settings are the stages
        hyper = {
            label: facts.configured[key]
            for key, label in _HYPER.items()
            if facts.configured.get(key) not in _OFF
        }
        warmup = facts.configured.get("warmup_steps")
        # transformers 5: a warmup_steps float below 1 is a ratio of the optimizer steps.
        if isinstance(warmup, float) and 0 < warmup < 1:
            hyper.pop(_HYPER["warmup_steps"])
            hyper["warmup"] = f"{100 * warmup:g}% of the optimizer steps"
        for label, value in facts.trained.items():
            hyper.setdefault(label, value)  # the run record's configured value wins
    found.hyperparameters = hyper or None

    if overrides is not None:
        merged = {
            f.name: getattr(overrides, f.name)
            for f in fields(CardInfo)
            if getattr(overrides, f.name) is not None
        }
        if overrides.hyperparameters is not None:  # explicit values override, recorded ones stay
            merged["hyperparameters"] = {**(found.hyperparameters or {}), **overrides.hyperparameters}
        facts.info = replace(found, **merged)
    info = facts.info
    if info.method == "distillation" and not stages:
        # Temperature and alpha describe a distillation; on any other model they would be noise.
        extra = {
            label: getattr(info, key)
            for key, label in _DISTILL_HYPER.items()
            if getattr(info, key) is not None
        }
        if extra:
            info.hyperparameters = {**(info.hyperparameters or {}), **extra}
    return facts


def collect_card_info(model_folder: str | Path, overrides: CardInfo | None = None) -> CardInfo:
    """The card facts recorded in `model_folder` (reports, run record, trainer state), with `overrides` winning."""
    return _gather(Path(model_folder), overrides).info


# ----------------------------------------------------------------------------------------------- text


def _is_hub_id(value: str) -> bool:
    """True when `value` reads as a Hub repo id rather than a local path or file."""
    if value.startswith(("/", ".", "~", "wheel:")) or os.path.exists(value) or Path(value).suffix in {
        ".tsv", ".csv", ".json", ".jsonl", ".parquet", ".txt",
    }:  # fmt: skip
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def _first_teacher(teacher: str | list[str] | None) -> str | None:
    """The teacher, or the first of several (the one a student's layers come from when it has no other source)."""
    return teacher[0] if isinstance(teacher, list) and teacher else teacher or None


def _public_name(value: str, kind: str = "") -> str:
    """A Hub id as a link; a local path reduced to its last part, so no local directory leaks into a card."""
    value = display_name(value)
    if _is_hub_id(value):
        return f"[{value}](https://huggingface.co/{kind}{value})"
    if value.startswith("wheel:"):
        return f"`{value}` (Python package)"
    return f"`{Path(value).name}` (local)"


def _hub_ids(values: list[str] | None) -> list[str] | None:
    ids = [v for v in values or [] if _is_hub_id(v)]
    return ids or None


def _bnb_arguments(quantization: dict) -> str:
    """The saved bitsandbytes settings as BitsAndBytesConfig(...) keyword arguments (non-defaults only)."""
    diff = BitsAndBytesConfig.from_dict(dict(quantization)).to_diff_dict()
    keys = sorted(
        (k for k in diff if not k.startswith("_") and k != "quant_method"),
        key=lambda k: not k.startswith("load_in"),
    )
    return ", ".join(f"{k}={diff[k]!r}" for k in keys)


def _compression(config: dict) -> list[str]:
    """Compression steps visible in the saved files."""
    steps = []
    if any(config.get("pruned_heads") or {}):
        steps.append("pruning (attention heads)")
    if config.get(LOWRANK_FIELD):
        steps.append("low-rank factorization")
    if config.get(CPU_INT8_FIELD):
        steps.append("int8 quantization (ONNX Runtime, CPU)")
    openvino = config.get(OPENVINO_FIELD) or {}
    if openvino:
        steps.append(
            "int8 quantization (OpenVINO NNCF, CPU)" if openvino.get("int8") else "OpenVINO IR (CPU)"
        )
    if config.get(OPENVINO_LM_FIELD):
        steps.append(f"OpenVINO IR for CPU decoding ({_openvino_precision(config)})")
    q = config.get("quantization_config")
    if q:
        if q.get("load_in_8bit"):
            steps.append("8-bit quantization (bitsandbytes LLM.int8)")
        elif q.get("load_in_4bit"):
            steps.append(f"4-bit quantization (bitsandbytes {q.get('bnb_4bit_quant_type', 'fp4')})")
        else:
            steps.append(f"quantization ({q.get('quant_method', 'unknown method')})")
    return steps


def _openvino_precision(config: dict) -> str | None:
    """How an OpenVINO folder stores its weights, as the card names it: 'int8' / 'float32' for a classifier (NNCF
    quantizes the whole graph), 'int8 weights' / 'float32 weights' for a causal LM; None for other folders."""
    if config.get(OPENVINO_FIELD):
        return "int8" if config[OPENVINO_FIELD].get("int8") else "float32"
    if config.get(OPENVINO_LM_FIELD):
        int8 = str(config[OPENVINO_LM_FIELD].get("weights", "")).startswith("int8")
        return "int8 weights" if int8 else "float32 weights"
    return None


def _usage(task: TaskKind | None, examples: list[str]) -> str:
    """Python lines that run the model on the run's own validation text (or a neutral placeholder)."""
    if task is TaskKind.TEXT_CLASSIFICATION:
        texts = examples[:2] or ["Replace this with a text of your task."]
        return (
            f'\ninputs = tokenizer({texts!r}, padding=True, return_tensors="pt")\n'
            "predicted = model(**inputs).logits.argmax(-1)\n"
            "print([model.config.id2label[int(i)] for i in predicted])\n"
        )
    if task is TaskKind.TEXT_GENERATION:
        prompt = (examples or ["Once upon a time"])[0][:200]
        return (
            f'\ninputs = tokenizer({prompt!r}, return_tensors="pt")\n'
            "output = model.generate(**inputs, max_new_tokens=30)\n"
            "print(tokenizer.decode(output[0], skip_special_tokens=True))\n"
        )
    return ""


def _loading_snippet(facts: _Facts, location: str) -> tuple[str, str]:
    """Markdown explaining how to load this folder, and the Python code for it."""
    config = facts.config
    auto = facts.task.auto_class_name if facts.task else "AutoModel"
    q = config.get("quantization_config") or {}
    # Folders only hfkit can rebuild (an exported runtime, factorized layers) load through hfkit.io.load_model.
    hfkit_loader = (
        "from huggingface_hub import snapshot_download\n\n"
        "from hfkit.io import load_model\n\n"
        f'model, tokenizer = load_model(snapshot_download("{location}"))\n'
    )
    if config.get(CPU_INT8_FIELD):
        note = (
            f"An int8 ONNX Runtime graph (`{ONNX_FILE}`) for the CPU, not a PyTorch checkpoint: load it with hfkit "
            '(`pip install "hfkit[onnx]"`), which runs it as a classifier returning logits.'
        )
        code = hfkit_loader
    elif config.get(OPENVINO_FIELD):
        note = (
            f"An OpenVINO IR ({_openvino_precision(config)}; `{OPENVINO_FILE}` + `{OPENVINO_WEIGHTS}`) for the CPU, not a PyTorch "
            'checkpoint: load it with hfkit (`pip install "hfkit[openvino]"`), which runs it as a classifier '
            "returning logits."
        )
        code = hfkit_loader
    elif config.get(OPENVINO_LM_FIELD):
        note = (
            f"An OpenVINO IR ({_openvino_precision(config)}; `{OPENVINO_FILE}` + `{OPENVINO_WEIGHTS}`) "
            'for greedy decoding on a CPU, not a PyTorch checkpoint: load it with hfkit (`pip install "hfkit[openvino]"`), '
            "whose `generate` takes transformers' arguments, or run `hfkit generate --model_name_or_path <folder>`."
        )
        code = hfkit_loader
    elif config.get(LOWRANK_FIELD):
        note = (
            f"The linear layers are stored factorized (`{LOWRANK_FIELD}` in config.json): load the model with "
            "hfkit, which rebuilds them (a plain from_pretrained would start them from random weights)."
        )
        code = hfkit_loader
    elif q.get("quant_method") == "bitsandbytes":
        bits = "8-bit" if q.get("load_in_8bit") else "4-bit"
        note = (
            f"The weights are stored {bits} (bitsandbytes; `pip install bitsandbytes`). `from_pretrained` "
            "reads these settings from config.json; they are spelled out here so you can see them."
        )
        code = (
            f"from transformers import {auto}, AutoTokenizer, BitsAndBytesConfig\n\n"
            f"quantization_config = BitsAndBytesConfig({_bnb_arguments(q)})\n"
            f'model = {auto}.from_pretrained("{location}", quantization_config=quantization_config)\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{location}")\n'
        )
    else:
        note = "A standard Transformers checkpoint (safetensors)."
        code = (
            f"from transformers import {auto}, AutoTokenizer\n\n"
            f'model = {auto}.from_pretrained("{location}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{location}")\n'
        )
    return note, code + _usage(facts.task, facts.examples)


def _weights_mb(folder: Path) -> tuple[int, float]:
    files = [p for p in folder.glob("*.safetensors") if p.name != "distill_projections.safetensors"]
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def _data_lines(facts: _Facts) -> list[str]:
    lines = []
    for split, entry in facts.data.items():
        source = entry.get("source")
        if not source:
            if entry.get("held_out"):
                lines.append(
                    f"- {split}: held out from the training data (validation_split {entry['held_out']})"
                )
            continue
        sizes = [f"{entry['rows']:,} rows"] if isinstance(entry.get("rows"), int) else []
        size = entry.get("bytes")
        if isinstance(size, int):
            sizes.append(f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB")
        sizes = ", ".join(sizes)
        lines.append(f"- {split}: {_public_name(source, 'datasets/')}" + (f", {sizes}" if sizes else ""))
    for dataset in facts.info.datasets or []:
        if not any(entry.get("source") == dataset for entry in facts.data.values()):
            lines.append(f"- {_public_name(dataset, 'datasets/')}")
    return lines


def _construction(facts: _Facts) -> str | None:
    """How the model was built before training: the layers kept and the model they came from."""
    layers = facts.configured.get("student_layers") or facts.configured.get("keep_layers")
    if not layers:
        return None
    source = (
        facts.configured.get("student_name_or_path")
        or _first_teacher(facts.info.teacher)
        or facts.configured.get("model_name_or_path")
    )
    total = facts.config.get("num_hidden_layers")
    text = f"layers {', '.join(map(str, layers))} kept" + (f" ({total} layers)" if total else "")
    return text + (f" of {_public_name(source)}" if source else "")


def _stage_table(facts: _Facts) -> str:
    ref = facts.reference or {}
    rows = []
    for stage in ([ref] if ref else []) + facts.stages:
        extra = stage.get("extra") or {}
        notes = []
        if "vocab_size" in extra:
            notes.append(f"vocabulary {extra.get('original_vocab_size', '?'):,} -> {extra['vocab_size']:,}")
        if "oov_row_fraction" in extra:
            notes.append(
                f"validation rows with a token outside it: {percent(extra['oov_row_fraction'])} "
                f"(tokens: {percent(extra.get('oov_token_fraction'))})"
            )
        accuracy = stage.get("accuracy")
        delta = (
            f"{100 * (accuracy - ref['accuracy']):+.2f}"
            if isinstance(accuracy, float) and isinstance(ref.get("accuracy"), float)
            else "-"
        )
        latency = stage.get("latency_ms")
        speedup = ref.get("latency_ms", 0) / latency if latency else None
        rows.append([
            stage.get("chain") or "student (before compression)",
            f"{stage.get('parameters', 0):,}",
            f"{stage.get('size_mb', 0):.1f}",
            percent(accuracy) if isinstance(accuracy, float) else "-",
            delta,
            f"{latency:.1f}" if latency else "-",
            f"{speedup:.2f}x" if speedup else "-",
            "; ".join(notes) or "",
        ])  # fmt: skip
    return markdown_table(
        rows,
        [
            "stage",
            "parameters",
            "disk MB",
            "accuracy",
            "vs student (points)",
            "ms/batch",
            "speed-up",
            "notes",
        ],
    )


def model_card(
    model_folder: str | Path, card_info: CardInfo | None = None, repo_id: str | None = None
) -> ModelCard:
    """The model card (ModelCard: YAML metadata + Markdown body) of the model saved in `model_folder`."""
    folder = Path(model_folder)
    facts = _gather(folder, card_info)
    info, config = facts.info, facts.config
    tag = facts.task.pipeline_tag if facts.task else None
    compression = _compression(config)
    if facts.stages:
        compression = [s.get("chain", "").split(">")[-1] for s in facts.stages]
    name = info.model_name or (repo_id.split("/")[-1] if repo_id else folder.resolve().name)
    distilled = info.method == "distillation"
    training = info.method
    if training and distilled and isinstance(info.teacher, list):  # several teachers (distill `teachers`)
        training += f" from teachers {', '.join(_public_name(t) for t in info.teacher)}"
    elif training and distilled and info.teacher is not None:
        training += f" from teacher {_public_name(info.teacher)}"
    details = [
        f"{k} {v}" for k, v in (("temperature", info.temperature), ("alpha", info.alpha)) if v is not None
    ]
    if training and distilled and details:
        training += f" ({', '.join(details)})"

    method_text = " ".join([info.method or "", *_compression(config), *compression]).lower()
    tags = ["hfkit", *([tag] if tag else [])]
    for word, found in (
        ("distillation", ("distill",)),
        ("pruning", ("prun",)),
        ("low-rank", ("low-rank",)),
        ("quantization", ("quantiz", "int8 weights")),
        ("8-bit", ("8-bit", "int8")),
        ("4-bit", ("4-bit",)),
        ("bitsandbytes", ("bitsandbytes",)),
        ("vocabulary-trimming", ("trim_vocab",)),
        ("onnx", ("onnx runtime",)),  # the Hub's filters for runtimes other than torch
        ("openvino", ("openvino",)),
    ):
        if any(f in method_text for f in found):
            tags.append(word)
    tags += info.tags or []

    metrics = {k: v for k, v in (info.metrics or {}).items() if isinstance(v, int | float) and k != "loss"}
    datasets = _hub_ids(info.datasets)
    eval_results = None
    if metrics:
        validation = facts.evaluated_on or "validation"
        eval_results = [
            EvalResult(
                task_type=tag or "other",
                dataset_type=datasets[0] if datasets else "local",
                dataset_name=datasets[0] if datasets else Path(validation).name,
                metric_type=k,
                metric_value=round(float(v), 4),
            )
            for k, v in metrics.items()
        ]
    data = ModelCardData(
        license=info.license,
        library_name="transformers",
        base_model=info.base_model if info.base_model and _is_hub_id(info.base_model) else None,
        pipeline_tag=tag,
        tags=tags,
        datasets=datasets,
        language=info.language,
        metrics=list(metrics) or None,
        model_name=name if eval_results else None,  # only the model-index uses it
        eval_results=eval_results,
    )

    rows = [
        [
            "Architecture",
            f"`{', '.join(config.get('architectures') or ['unknown'])}` ({config.get('model_type')})",
        ]
    ]
    if tag:
        rows.append(["Task", tag])
    rows.append(["Base model", _public_name(info.base_model) if info.base_model else "not recorded"])
    rows.append(["Training", training or "not recorded"])
    construction = _construction(facts)
    if construction:
        rows.append(["Student", construction])
    if compression:
        rows.append(["Compression", " > ".join(compression)])
    id2label = config.get("id2label") or {}
    if tag == "text-classification" and id2label:
        rows.append(["Labels", ", ".join(str(id2label[k]) for k in sorted(id2label, key=int))])
    if facts.parameters:
        rows.append(["Parameters", f"{facts.parameters:,}"])
    graph = folder / ONNX_FILE
    ir_weights = folder / OPENVINO_WEIGHTS
    if config.get(CPU_INT8_FIELD) and graph.is_file():
        rows.append(["Weights", f"{ONNX_FILE} (ONNX Runtime, int8), {graph.stat().st_size / 1e6:.1f} MB"])
    elif (precision := _openvino_precision(config)) and ir_weights.is_file():  # OpenVINO classifier or LM
        rows.append(
            [
                "Weights",
                f"{OPENVINO_WEIGHTS} (OpenVINO IR, {precision}), {ir_weights.stat().st_size / 1e6:.1f} MB",
            ]
        )
    else:
        n_files, mb = _weights_mb(folder)
        rows.append(["Weights", f"{n_files} safetensors file(s), {mb:.1f} MB"])
    if info.license is None:
        rows.append(["License", "not set"])

    body = [f"# {name}", "", markdown_table(rows, ["", ""]), "", "## Training data", ""]
    body += _data_lines(facts) or ["Not recorded."]

    body += ["", "## Evaluation", ""]
    if info.metrics:
        where = ""
        if facts.num_examples:
            where = f" on {facts.num_examples:,} held-out examples"
            if facts.evaluated_on:
                where += f" ({_public_name(facts.evaluated_on, 'datasets/')})"
        body += [
            f"Metrics of this model{where}:",
            "",
            markdown_table([[k, format_metric(k, v)] for k, v in info.metrics.items()], ["metric", "value"]),
        ]
    else:
        body.append("No evaluation recorded.")
    distill_report = _read_record(DistillRecord, folder)
    if distill_report is not None and distill_report.models:
        body += [
            "",
            f"Teacher vs student on {distill_report.validation_examples or 'the'} validation examples "
            "(latency of one batch, both timed together):",
            "",
            markdown_table(
                [
                    [
                        r.name,
                        r.parameters,
                        round(r.size_mb, 1),
                        percent(r.accuracy),
                        percent(r.f1),
                        round(r.latency_ms, 1),
                        f"{r.speedup:.2f}x",
                    ]
                    for r in distill_report.models
                ],
                ["model", "parameters", "size MB", "accuracy", "F1", "ms/batch", "speed-up"],
            ),  # fmt: skip
        ]
    if facts.stages:
        body += [
            "",
            "## Compression",
            "",
            "Every stage of this model's chain, saved, reloaded and measured by the compress recipe on the same "
            "validation rows (latency: all models timed together):",
            "",
            _stage_table(facts),
        ]

    body += ["", "## Training hyper-parameters", ""]
    hyper = info.hyperparameters or {}
    if hyper:
        body.append(markdown_table([[k, v] for k, v in hyper.items()], ["name", "value"]))
    elif facts.stages:
        body.append("Not trained by this run: the compression stages above transformed the student.")
    else:
        body.append("Not recorded.")

    note, code = _loading_snippet(facts, repo_id or f"your-username/{name}")
    body += ["", "## How to load", "", note, "", "```python", code.rstrip(), "```", ""]
    body += ["*Card generated by hfkit from the files saved with the model.*", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def write_model_card(
    model_folder: str | Path, card_info: CardInfo | None = None, repo_id: str | None = None
) -> Path:
    """Write the generated model card to `model_folder`/README.md and return its path."""
    path = Path(model_folder) / CARD_FILE
    model_card(model_folder, card_info, repo_id).save(path)
    return path
