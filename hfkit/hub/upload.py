"""Stage the exact files of an upload next to the model card, check them, and push them with huggingface_hub.

`prepare_upload_folder` copies from a saved model folder only the files needed to load the model (config,
safetensors weights or a CPU int8 folder's ONNX graph, tokenizer, compression metadata: an allow-list, so a
new training artefact stays out until someone adds it) plus a generated README.md, after scanning them for
anything shaped like a token; what gets uploaded can be read on disk first. `push_to_hub` uploads that folder
with `HfApi.upload_folder(allow_patterns=...)` (the same allow-list, checked again by huggingface_hub).
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import PreTrainedModel

from ..errors import MissingInputError, UserInputError
from ..io import ONNX_FILE, OPENVINO_FILE, OPENVINO_WEIGHTS, is_cpu_int8, is_openvino, is_openvino_lm
from .card import CARD_FILE, LOWRANK_FILE, CardInfo, model_card, read_json, write_model_card

logger = logging.getLogger(__name__)

__all__ = ["UPLOAD_PATTERNS", "prepare_upload_folder", "push_to_hub", "save_model"]

WEIGHTS_INDEX = "model.safetensors.index.json"
# Weights written next to a model for training only (DistillTrainer's learned projections): never uploaded.
TRAINING_ONLY_WEIGHTS = ("distill_projections.safetensors",)

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
# The files an exported runtime folder holds its weights in, staged only from such a folder: ONNX_FILE from a CPU
# int8 folder (hfkit.compress.cpu_int8; protobuf: data, no code), the IR's .xml and its raw-tensor .bin from an
# OpenVINO folder (hfkit.compress.openvino; OpenVINO's .bin is raw tensor bytes: no code, unlike torch's .bin).
EXPORTED_FILES = (ONNX_FILE, OPENVINO_FILE, OPENVINO_WEIGHTS)
# The allow-list as huggingface_hub patterns (top level only: no checkpoint-*/ folder matches them).
UPLOAD_PATTERNS = [
    *CONFIG_FILES,
    *TOKENIZER_FILES,
    WEIGHTS_INDEX,
    "*.safetensors",
    *EXPORTED_FILES,
    CARD_FILE,
]
# Small JSON settings files: checked for token-like keys (vocab files are not, a vocab may hold the word).
SETTINGS_FILES = {*CONFIG_FILES, "tokenizer_config.json", "special_tokens_map.json", "chat_template.json"}
TOKEN_KEYS = {"token", "use_auth_token", "hub_token", "hf_token", "api_key", "access_token"}
# Hub user tokens are 'hf_' + 34 letters/digits; match a little wider to be safe.
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{30,}")


def _exported_runtime(folder: Path) -> tuple[str, tuple[str, ...], str] | None:
    """(runtime, the files holding its weights, how to make them again) of an exported folder; None for torch."""
    config = read_json(folder / "config.json") or {}
    if is_cpu_int8(config):
        return (
            "CPU int8 (ONNX Runtime)",
            (ONNX_FILE,),
            "hfkit compress with the cpu_int8 stage, or hfkit.compress.cpu_int8.export_cpu_int8",
        )
    if is_openvino(config):
        return (
            "OpenVINO",
            (OPENVINO_FILE, OPENVINO_WEIGHTS),
            "hfkit compress with the openvino or openvino_int8 stage, or hfkit.compress.openvino.export_openvino",
        )
    if is_openvino_lm(config):
        return (
            "OpenVINO causal-LM",
            (OPENVINO_FILE, OPENVINO_WEIGHTS),
            "hfkit export, or hfkit.compress.openvino_lm.export_openvino_lm",
        )
    return None


def _upload_files(folder: Path, exported: tuple[str, tuple[str, ...], str] | None) -> list[Path]:
    """The files of `folder` that belong in an upload (top level only, so no checkpoint-*/ folder)."""
    allowed = {*CONFIG_FILES, *TOKENIZER_FILES, WEIGHTS_INDEX}
    if exported:
        allowed.update(exported[1])
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and (p.name in allowed or (p.suffix == ".safetensors" and p.name not in TRAINING_ONLY_WEIGHTS))
    )


def _check_no_token(path: Path) -> None:
    """Refuse a file that looks like it holds a Hub token; the message names the file, never the value."""
    if path.suffix == ".safetensors":
        return
    text = path.read_text(encoding="utf-8", errors="ignore")
    if TOKEN_PATTERN.search(text):
        raise UserInputError(
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

    bad = keys(read_json(path)) if path.suffix == ".json" else set()
    if bad:
        raise UserInputError(
            f"{path} sets {sorted(bad)}: an access token may be saved in it, so it will not be uploaded. "
            "Delete those keys from the file (or re-save without passing a token) and try again."
        )


def _check_weights(
    folder: Path, files: list[Path], exported: tuple[str, tuple[str, ...], str] | None
) -> None:
    if exported:  # an ONNX Runtime graph or an OpenVINO IR holds the weights (hfkit.io.load_model runs them)
        runtime, needed, how = exported
        missing = [name for name in needed if not any(p.name == name for p in files)]
        if missing:
            raise UserInputError(
                f"{folder} is a {runtime} folder without its {', '.join(missing)}: export it again ({how})."
            )
        return
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        others = sorted(  # other weight formats (training state such as optimizer.pt is not weights)
            p.name
            for p in folder.iterdir()
            if "model" in p.name and p.suffix in {".bin", ".pt", ".pth", ".ckpt"}
        )
        seen = f" (found only {', '.join(others)})" if others else ""
        raise UserInputError(
            f"no safetensors weights in {folder}{seen}. hfkit uploads safetensors only: load the model and "
            "re-save it with model.save_pretrained(folder) (transformers >= 5 always writes safetensors; "
            "4.x needs save_pretrained(folder, safe_serialization=True))."
        )
    index = read_json(folder / WEIGHTS_INDEX)
    if index is not None:
        missing = sorted(set(index.get("weight_map", {}).values()) - {p.name for p in weights})
        if missing:
            raise UserInputError(
                f"{folder}/{WEIGHTS_INDEX} lists shards that are missing: {missing}; re-save the model."
            )


def prepare_upload_folder(
    model_folder: str | Path,
    out_folder: str | Path,
    card_info: CardInfo | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the loadable files of `model_folder` (weights, config, tokenizer) plus a README.md to `out_folder`."""
    src, out = Path(model_folder), Path(out_folder)
    if not src.is_dir():
        raise MissingInputError(f"model folder not found: {src}; pass the output_dir of a training run.")
    if out.resolve() == src.resolve():
        raise UserInputError(
            f"out_folder is the model folder {src}: choose a separate folder to build the upload in."
        )
    if not (src / "config.json").is_file():
        raise MissingInputError(
            f"{src} has no config.json: save the model there with model.save_pretrained(folder)."
        )
    exported = _exported_runtime(src)
    files = _upload_files(src, exported)
    _check_weights(src, files, exported)
    if not any(p.name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model") for p in files):
        raise UserInputError(
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
        known = {*CONFIG_FILES, *TOKENIZER_FILES, WEIGHTS_INDEX, *EXPORTED_FILES, CARD_FILE}
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
    model_card(src, card_info, repo_id).save(out / CARD_FILE)

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

    `token`: the argument, else the HF_TOKEN environment variable, else the stored `hf auth login`. With none
    of them this fails before any network call. It is passed to HfApi only, never logged or saved. An existing
    repo keeps its visibility: `private` applies when the repo is created.
    """
    folder = Path(folder)
    if not (folder / CARD_FILE).is_file():
        raise UserInputError(
            f"{folder} has no {CARD_FILE}: build the folder with prepare_upload_folder(model_folder, {folder}) "
            "first, so what is uploaded is what was checked."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserInputError(f"invalid repo_id {repo_id!r}: {err}") from err
    if "/" not in repo_id:
        raise UserInputError(
            f"repo_id {repo_id!r} has no namespace: give the full id, e.g. your-username/{repo_id}."
        )
    if token is None and huggingface_hub.get_token() is None:
        raise UserInputError(
            "no Hugging Face token: set the HF_TOKEN environment variable or run `hf auth login` (a token "
            "with write access), then push again. The upload folder is ready: " + str(folder)
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        allow_patterns=UPLOAD_PATTERNS,  # the staged folder holds only these; checked again on the way out
        ignore_patterns=list(TRAINING_ONLY_WEIGHTS),
    )
    logger.info("uploaded %s to https://huggingface.co/%s", folder, repo_id)
    return info


def _training_only_children(model: PreTrainedModel) -> list[str]:
    """Top-level submodules that a fresh model of this class does not have (e.g. a trainer's projections)."""
    try:
        with torch.device("meta"):
            fresh = type(model)(copy.deepcopy(model.config))
    except Exception:  # noqa: BLE001 (a class that cannot be rebuilt from its config: keep every weight)
        logger.debug("could not rebuild %s from its config; saving every submodule.", type(model).__name__)
        return []
    return sorted(set(dict(model.named_children())) - set(dict(fresh.named_children())))


def save_model(
    model: PreTrainedModel, tokenizer, folder: str | Path, card_info: CardInfo | None = None
) -> Path:
    """Save model (safetensors) + tokenizer + generated README.md to `folder`, ready for prepare_upload_folder."""
    # A PEFT model (or one with adapters attached) would save its adapters only, not a loadable full model.
    if not isinstance(model, PreTrainedModel) or getattr(model, "_hf_peft_config_loaded", False):
        raise UserInputError(
            f"save_model needs a full Transformers model, got {type(model).__name__} with adapters: "
            "merge them first with model = model.merge_and_unload()."
        )
    folder = Path(folder)
    state_dict = None
    extra = _training_only_children(model)
    if extra:
        # Modules a trainer attached (DistillTrainer's projections) are training-only: the saved model must
        # reload with its own class.
        prefixes = tuple(name + "." for name in extra)
        state_dict = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    model.save_pretrained(folder, state_dict=state_dict)
    tokenizer.save_pretrained(folder)
    write_model_card(folder, card_info)
    return folder
