"""Ship a model: save / reload it, write its model card, build the exact upload folder, push it to the Hub.

Every model hfkit produces (fine-tuned or distilled classifier, pruned / low-rank / quantized variant, causal
LM) is a folder written by ``save_pretrained``. ``prepare_upload_folder`` copies from it only the files needed
to load the model (config, safetensors weights, tokenizer, compression metadata) next to a generated README.md,
so what gets uploaded can be read on disk first; ``push_to_hub`` then uploads that folder with huggingface_hub.
Card facts come from the folder (config.json, eval_report.json, distill_report.json, trainer_state.json,
lowrank_config.json); explicit ``CardInfo`` fields override them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import BitsAndBytesConfig, PreTrainedModel

from .io import load_model  # noqa: F401 (the one loader; hfkit.export.load_model kept for callers)
from .trainers.distill_trainer import PROJECTIONS_FILE, PROJECTIONS_NAME

logger = logging.getLogger(__name__)

__all__ = [
    "CardInfo",
    "collect_card_info",
    "load_model",
    "model_card",
    "prepare_upload_folder",
    "push_to_hub",
    "save_model",
    "write_model_card",
]

CARD_FILE = "README.md"
LOWRANK_FILE = "lowrank_config.json"  # extra low-rank metadata some tools write; uploaded when present
LOWRANK_FIELD = "lowrank_ranks"  # config.json field where hfkit.compress.lowrank records factorized layers
WEIGHTS_INDEX = "model.safetensors.index.json"

# What an upload may hold: an allow-list, so a new training artefact is left out until someone adds it here.
# Training state (training_args.bin, optimizer.pt, scheduler.pt, rng_state*.pth, checkpoint-*/) is never
# needed to load a model, and .bin/.pt/.pth files are torch's executable serialization format.
CONFIG_FILES = ("config.json", "generation_config.json", LOWRANK_FILE, "quantization_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
)
# Small JSON settings files: checked for token-like keys (vocab files are not, a vocab may hold the word).
SETTINGS_FILES = {*CONFIG_FILES, "tokenizer_config.json", "special_tokens_map.json", "chat_template.json"}
TOKEN_KEYS = {"token", "use_auth_token", "hub_token", "hf_token", "api_key", "access_token"}
# Hub user tokens are 'hf_' + 34 letters/digits; match a little wider to be safe.
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{30,}")

# Architecture suffix -> (Auto class, Hub pipeline tag).
TASKS = {
    "ForSequenceClassification": ("AutoModelForSequenceClassification", "text-classification"),
    "ForCausalLM": ("AutoModelForCausalLM", "text-generation"),
    "ForTokenClassification": ("AutoModelForTokenClassification", "token-classification"),
    "ForQuestionAnswering": ("AutoModelForQuestionAnswering", "question-answering"),
    "ForMaskedLM": ("AutoModelForMaskedLM", "fill-mask"),
}
PIPELINE_TAGS = {tag: auto for auto, tag in TASKS.values()}

# Trainer timing entries are not model quality.
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "step", "total_flos")


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
                    raise ValueError(
                        f"{name} must be a JSON object like '{{\"accuracy\": 0.9}}', got {value!r}: {err}"
                    ) from err
                setattr(self, name, value)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping of name to value, got {type(value).__name__}.")


# ----------------------------------------------------------------------------------------------- facts


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it.") from err
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


def _trainer_state_facts(state: dict) -> tuple[dict[str, Any], dict[str, float]]:
    """Hyper-parameters and the last evaluation metrics recorded in a trainer_state.json."""
    history = state.get("log_history") or []
    hyper: dict[str, Any] = {}
    for key, name in (
        ("num_train_epochs", "epochs"),
        ("global_step", "optimizer steps"),
        ("train_batch_size", "batch size per device"),
    ):
        if state.get(key) is not None:
            hyper[name] = state[key]
    rates = [e["learning_rate"] for e in history if isinstance(e.get("learning_rate"), int | float)]
    if rates:
        # The schedule's peak as logged (every logging_steps), not necessarily the configured value.
        hyper["peak learning rate (logged)"] = max(rates)
    losses = [e["train_loss"] for e in history if "train_loss" in e]
    if losses:
        hyper["final training loss"] = losses[-1]
    evals = [e for e in history if any(k.startswith("eval_") for k in e)]
    return hyper, (_quality_metrics(evals[-1], "eval_") if evals else {})


def _is_hub_id(value: str) -> bool:
    """True when `value` reads as a Hub repo id rather than a local path or file."""
    if value.startswith(("/", ".", "~")) or os.path.exists(value) or Path(value).suffix in {
        ".tsv", ".csv", ".json", ".jsonl", ".parquet", ".txt",
    }:  # fmt: skip
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def _public_name(value: str, kind: str = "") -> str:
    """A Hub id as a link; a local path reduced to its last part, so no local directory leaks into a card."""
    if _is_hub_id(value):
        return f"[{value}](https://huggingface.co/{kind}{value})"
    return f"`{Path(value).name}` (local)"


def _hub_ids(values: list[str] | None) -> list[str] | None:
    ids = [v for v in values or [] if _is_hub_id(v)]
    return ids or None


def collect_card_info(model_folder: str | Path, overrides: CardInfo | None = None) -> CardInfo:
    """The card facts recorded in `model_folder` (reports, trainer state), with `overrides` winning."""
    folder = Path(model_folder)
    found = CardInfo()
    eval_report = _read_json(folder / "eval_report.json")
    distill_report = _read_json(folder / "distill_report.json")
    state = _read_json(folder / "trainer_state.json")

    hyper: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    if state is not None:
        hyper, metrics = _trainer_state_facts(state)
    if distill_report is not None:
        found.method = "distillation"
        # recipes/distill.py may record these; when it does not, pass them explicitly.
        for key in ("teacher", "temperature", "alpha"):
            if distill_report.get(key) is not None:
                setattr(found, key, distill_report[key])
        student = next((r for r in distill_report.get("models", []) if r.get("name") == "student"), None)
        if student and not metrics:
            metrics = {k: student[k] for k in ("accuracy", "f1") if isinstance(student.get(k), int | float)}
    elif eval_report is not None or state is not None:
        found.method = "fine-tuning"
    if eval_report is not None:
        metrics = _quality_metrics(eval_report.get("metrics", {})) or metrics
        if eval_report.get("model"):
            found.base_model = eval_report["model"]
    found.metrics = metrics or None
    found.hyperparameters = hyper or None

    if overrides is None:
        return found
    merged = {
        f.name: getattr(overrides, f.name) for f in fields(CardInfo) if getattr(overrides, f.name) is not None
    }
    if overrides.hyperparameters is not None:  # explicit values override, recorded ones stay
        merged["hyperparameters"] = {**(found.hyperparameters or {}), **overrides.hyperparameters}
    return replace(found, **merged)


# ----------------------------------------------------------------------------------------------- card


def _markdown_table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _task(config: dict) -> tuple[str | None, str | None]:
    """(Auto class, pipeline tag) of the first architecture in config.json."""
    for arch in config.get("architectures") or []:
        for suffix, (auto, tag) in TASKS.items():
            if arch.endswith(suffix):
                return auto, tag
    return None, None


def _bnb_arguments(quantization: dict) -> str:
    """The saved bitsandbytes settings as BitsAndBytesConfig(...) keyword arguments (non-defaults only)."""
    diff = BitsAndBytesConfig.from_dict(dict(quantization)).to_diff_dict()
    keys = sorted(
        (k for k in diff if not k.startswith("_") and k != "quant_method"),
        key=lambda k: not k.startswith("load_in"),
    )
    return ", ".join(f"{k}={diff[k]!r}" for k in keys)


def _compression(config: dict, folder: Path) -> list[str]:
    """Compression steps visible in the saved files."""
    steps = []
    if any(config.get("pruned_heads") or {}):
        steps.append("pruning (attention heads)")
    if config.get(LOWRANK_FIELD):
        steps.append("low-rank factorization")
    q = config.get("quantization_config")
    if q:
        if q.get("load_in_8bit"):
            steps.append("8-bit quantization (bitsandbytes LLM.int8)")
        elif q.get("load_in_4bit"):
            steps.append(f"4-bit quantization (bitsandbytes {q.get('bnb_4bit_quant_type', 'fp4')})")
        else:
            steps.append(f"quantization ({q.get('quant_method', 'unknown method')})")
    return steps


def _loading_snippet(config: dict, folder: Path, location: str) -> tuple[str, str]:
    """Markdown explaining how to load this folder, and the Python code for it."""
    auto, tag = _task(config)
    auto = auto or "AutoModel"
    q = config.get("quantization_config") or {}
    if config.get(LOWRANK_FIELD):
        note = (
            f"The linear layers are stored factorized (`{LOWRANK_FIELD}` in config.json): load the model with "
            "hfkit, which rebuilds them (a plain from_pretrained would start them from random weights)."
        )
        code = (
            "from huggingface_hub import snapshot_download\n"
            f"from transformers import AutoTokenizer, {auto}\n\n"
            "from hfkit.compress.lowrank import load_lowrank\n\n"
            f'folder = snapshot_download("{location}")\n'
            f"model = load_lowrank(folder, {auto})\n"
            "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
        )
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
    if tag == "text-classification":
        code += (
            '\ninputs = tokenizer(["a gorgeous, witty movie"], return_tensors="pt")\n'
            "predicted = model(**inputs).logits.argmax(-1)\n"
            "print([model.config.id2label[int(i)] for i in predicted])\n"
        )
    elif tag == "text-generation":
        code += (
            '\ninputs = tokenizer("Once upon a time", return_tensors="pt")\n'
            "output = model.generate(**inputs, max_new_tokens=30)\n"
            "print(tokenizer.decode(output[0], skip_special_tokens=True))\n"
        )
    return note, code


def _weights_mb(folder: Path) -> tuple[int, float]:
    files = [p for p in folder.glob("*.safetensors") if p.name != PROJECTIONS_FILE]
    return len(files), sum(p.stat().st_size for p in files) / 1e6


def model_card(
    model_folder: str | Path, card_info: CardInfo | None = None, repo_id: str | None = None
) -> str:
    """The README.md (YAML front matter + body) describing the model saved in `model_folder`."""
    folder = Path(model_folder)
    config = _read_json(folder / "config.json")
    if config is None:
        raise ValueError(
            f"{folder} has no config.json: it is not a saved Transformers model. "
            "Save it with model.save_pretrained(folder) first."
        )
    info = collect_card_info(folder, card_info)
    _, tag = _task(config)
    compression = _compression(config, folder)
    name = info.model_name or (repo_id.split("/")[-1] if repo_id else folder.resolve().name)
    training = info.method
    if training and info.teacher is not None:
        training += f" from teacher {_public_name(info.teacher)}"
    details = [
        f"{k} {v}" for k, v in (("temperature", info.temperature), ("alpha", info.alpha)) if v is not None
    ]
    if training and details:
        training += f" ({', '.join(details)})"

    method_text = " ".join([info.method or "", *compression]).lower()
    tags = ["hfkit", *([tag] if tag else [])]
    for word, found in (
        ("distillation", "distill"),
        ("pruning", "prun"),
        ("low-rank", "low-rank"),
        ("quantization", "quantiz"),
        ("8-bit", "8-bit"),
        ("4-bit", "4-bit"),
        ("bitsandbytes", "bitsandbytes"),
    ):
        if found in method_text:
            tags.append(word)
    tags += info.tags or []

    metrics = {k: v for k, v in (info.metrics or {}).items() if isinstance(v, int | float)}
    datasets = _hub_ids(info.datasets)
    eval_results = None
    if metrics and datasets:
        eval_results = [
            EvalResult(
                task_type=tag or "other",
                dataset_type=datasets[0],
                dataset_name=datasets[0],
                metric_type=k,
                metric_value=round(float(v), 4),
            )
            for k, v in metrics.items()
            if k != "loss"  # a training objective, not a Hub metric
        ] or None
    data = ModelCardData(
        license=info.license,
        library_name="transformers",
        base_model=info.base_model if info.base_model and _is_hub_id(info.base_model) else None,
        pipeline_tag=tag,
        tags=tags,
        datasets=datasets,
        language=info.language,
        metrics=[k for k in metrics if k != "loss"] or None,
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
    if compression:
        rows.append(["Compression", " + ".join(compression)])
    id2label = config.get("id2label") or {}
    if tag == "text-classification" and id2label:
        rows.append(["Labels", ", ".join(str(id2label[k]) for k in sorted(id2label, key=int))])
    eval_report = _read_json(folder / "eval_report.json") or {}
    if (eval_report.get("parameters") or {}).get("total"):
        rows.append(["Parameters", eval_report["parameters"]["total"]])
    n_files, mb = _weights_mb(folder)
    rows.append(["Weights", f"{n_files} safetensors file(s), {mb:.1f} MB"])
    if info.license is None:
        rows.append(["License", "not set"])

    body = [f"# {name}", "", _markdown_table(rows, ["", ""]), "", "## Training data", ""]
    if info.datasets:
        body += [f"- {_public_name(d, 'datasets/')}" for d in info.datasets]
    else:
        body.append("Not recorded.")

    body += ["", "## Evaluation", ""]
    if metrics:
        where = (
            f" on {eval_report['num_examples']:,} held-out examples"
            if eval_report.get("num_examples")
            else ""
        )
        body += [
            f"Metrics of this model{where}:",
            "",
            _markdown_table([[k, v] for k, v in metrics.items()], ["metric", "value"]),
        ]
    else:
        body.append("No evaluation recorded.")
    distill_report = _read_json(folder / "distill_report.json") or {}
    if distill_report.get("models"):
        body += [
            "",
            f"Teacher vs student on {distill_report.get('validation_examples', 'the')} validation examples "
            "(CPU latency of one batch):",
            "",
            _markdown_table(
                [
                    [
                        r.get("name"),
                        r.get("parameters"),
                        round(r.get("size_mb", 0), 1),
                        r.get("accuracy"),
                        r.get("f1"),
                        round(r.get("latency_ms", 0), 1),
                        f"{r.get('speedup', 1):.2f}x",
                    ]
                    for r in distill_report["models"]
                ],  # fmt: skip
                ["model", "parameters", "size MB", "accuracy", "F1", "ms/batch", "speed-up"],
            ),
        ]

    hyper = dict(info.hyperparameters or {})
    for key in ("temperature", "alpha"):
        if getattr(info, key) is not None:
            hyper.setdefault(key, getattr(info, key))
    body += ["", "## Training hyper-parameters", ""]
    body.append(
        _markdown_table([[k, v] for k, v in hyper.items()], ["name", "value"]) if hyper else "Not recorded."
    )

    note, code = _loading_snippet(config, folder, repo_id or f"your-username/{name}")
    body += ["", "## How to load", "", note, "", "```python", code.rstrip(), "```", ""]
    body += ["*Card generated by hfkit from the files saved with the model.*", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)


def write_model_card(
    model_folder: str | Path, card_info: CardInfo | None = None, repo_id: str | None = None
) -> Path:
    """Write the generated model card to `model_folder`/README.md and return its path."""
    path = Path(model_folder) / CARD_FILE
    path.write_text(model_card(model_folder, card_info, repo_id), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- upload folder


def _upload_files(folder: Path) -> list[Path]:
    """The files of `folder` that belong in an upload (top level only, so no checkpoint-*/ folder)."""
    allowed = {*CONFIG_FILES, *TOKENIZER_FILES, WEIGHTS_INDEX}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name in allowed or (p.suffix == ".safetensors" and p.name != PROJECTIONS_FILE))
    )


def _check_no_token(path: Path) -> None:
    """Refuse a file that looks like it holds a Hub token; the message names the file, never the value."""
    if path.suffix == ".safetensors":
        return
    text = path.read_text(encoding="utf-8", errors="ignore")
    if TOKEN_PATTERN.search(text):
        raise ValueError(
            f"{path} contains what looks like a Hugging Face token (hf_...); it will not be uploaded. "
            "Remove the token from that file and re-save the model."
        )
    if path.name not in SETTINGS_FILES:
        return

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {k for k, v in node.items() if k in TOKEN_KEYS and isinstance(v, str) and v}
            return found.union(*(keys(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(keys(v) for v in node))
        return set()

    bad = keys(_read_json(path)) if path.suffix == ".json" else set()
    if bad:
        raise ValueError(
            f"{path} sets {sorted(bad)}: an access token may be saved in it, so it will not be uploaded. "
            "Delete those keys from the file (or re-save without passing a token) and try again."
        )


def _check_weights(folder: Path, files: list[Path]) -> None:
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        others = sorted(  # other weight formats (training state such as optimizer.pt is not weights)
            p.name
            for p in folder.iterdir()
            if "model" in p.name and p.suffix in {".bin", ".pt", ".pth", ".ckpt"}
        )
        seen = f" (found only {', '.join(others)})" if others else ""
        raise ValueError(
            f"no safetensors weights in {folder}{seen}. hfkit uploads safetensors only: load the model and "
            "re-save it with model.save_pretrained(folder) (transformers >= 5 always writes safetensors; "
            "4.x needs save_pretrained(folder, safe_serialization=True))."
        )
    index = _read_json(folder / WEIGHTS_INDEX)
    if index is not None:
        missing = sorted(set(index.get("weight_map", {}).values()) - {p.name for p in weights})
        if missing:
            raise ValueError(
                f"{folder}/{WEIGHTS_INDEX} lists shards that are missing: {missing}; re-save the model."
            )


def prepare_upload_folder(
    model_folder: str | Path,
    out_folder: str | Path,
    card_info: CardInfo | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the loadable files of `model_folder` (safetensors, config, tokenizer) plus a README.md to `out_folder`."""
    src, out = Path(model_folder), Path(out_folder)
    if not src.is_dir():
        raise FileNotFoundError(f"model folder not found: {src}; pass the output_dir of a training run.")
    if out.resolve() == src.resolve():
        raise ValueError(
            f"out_folder is the model folder {src}: choose a separate folder to build the upload in."
        )
    if not (src / "config.json").is_file():
        raise ValueError(
            f"{src} has no config.json: save the model there with model.save_pretrained(folder)."
        )
    files = _upload_files(src)
    _check_weights(src, files)
    if not any(p.name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") for p in files):
        raise ValueError(
            f"no tokenizer files in {src}: save the tokenizer next to the model with "
            "tokenizer.save_pretrained(folder), so the Hub repo can be loaded on its own."
        )
    for path in files:
        _check_no_token(path)

    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty; choose a new folder, or pass overwrite=True (--overwrite_output_dir) "
                "to replace a folder built by an earlier run."
            )
        known = {*CONFIG_FILES, *TOKENIZER_FILES, WEIGHTS_INDEX, CARD_FILE}
        strangers = sorted(
            p.name for p in out.iterdir() if p.is_dir() or not (p.name in known or p.suffix == ".safetensors")
        )
        if strangers:
            # Only ever delete what this function could have written there.
            raise FileExistsError(
                f"{out} holds files an upload folder would not ({', '.join(strangers[:5])}); "
                "refusing to clear it: choose a new folder."
            )
        for p in out.iterdir():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, out / path.name)  # follows symlinks (e.g. a Hub cache snapshot)
    # The card is written from the source folder, whose reports hold the facts but are not uploaded.
    (out / CARD_FILE).write_text(model_card(src, card_info, repo_id), encoding="utf-8")

    left_out = sorted(p.name + ("/" if p.is_dir() else "") for p in src.iterdir() if p not in files)
    if left_out:
        logger.info("not uploaded (not needed to load the model): %s", ", ".join(left_out))
    return out


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = True,
    commit_message: str = "Upload model with hfkit",
):
    """Create the Hub repo if needed and upload `folder` as one commit; returns huggingface_hub's CommitInfo.

    `token`: the argument, else the HF_TOKEN environment variable, else the stored `hf auth login`
    (huggingface_hub resolves both when it is None). It is passed to HfApi only, never logged or saved.
    An existing repo keeps its visibility: `private` applies when the repo is created.
    """
    folder = Path(folder)
    if not (folder / CARD_FILE).is_file():
        raise ValueError(
            f"{folder} has no {CARD_FILE}: build the folder with prepare_upload_folder(model_folder, {folder}) "
            "first, so what is uploaded is what was checked."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"invalid repo_id {repo_id!r}: {err}") from err
    if "/" not in repo_id:
        raise ValueError(
            f"repo_id {repo_id!r} has no namespace: give the full id, e.g. your-username/{repo_id}."
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    logger.info("uploaded %s to https://huggingface.co/%s", folder, repo_id)
    return info


# ----------------------------------------------------------------------------------------------- save / load


def save_model(
    model: PreTrainedModel, tokenizer, folder: str | Path, card_info: CardInfo | None = None
) -> Path:
    """Save model (safetensors) + tokenizer + generated README.md to `folder`, ready for prepare_upload_folder."""
    # A PEFT model (or one with adapters attached) would save its adapters only, not a loadable full model.
    if not isinstance(model, PreTrainedModel) or getattr(model, "_hf_peft_config_loaded", False):
        raise ValueError(
            f"save_model needs a full Transformers model, got {type(model).__name__} with adapters: "
            "merge them first with model = model.merge_and_unload()."
        )
    folder = Path(folder)
    state_dict = None
    if hasattr(model, PROJECTIONS_NAME):
        # DistillTrainer's learned projections are training-only: the saved student must reload without them.
        prefix = PROJECTIONS_NAME + "."
        state_dict = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    model.save_pretrained(folder, state_dict=state_dict)
    tokenizer.save_pretrained(folder)
    write_model_card(folder, card_info)
    return folder
