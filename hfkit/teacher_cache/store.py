"""What every teacher-output cache shares: the cache key, atomic safetensors writes, the checked load.

Cache key (sha256, hex) over, in order:

* ``FORMAT_VERSION`` -- bump it whenever the way logits are computed or stored changes;
* the teacher's identity: sha256 over its class name, its config (minus fields that only record where or
  with which library version it was loaded) and every state_dict tensor's name, dtype, shape and raw bytes.
  Hashing ~100M fp32 parameters (400 MB) takes ~0.2 s (sha256 at ~2 GB/s), far less than one teacher pass;
* the teacher config's ``id2label`` (also inside the config, kept separate so the metadata is readable);
* the dataset's ``_fingerprint`` and ``len(dataset)``: datasets derives the fingerprint from the data and
  every transform applied (tokenizer, max_length, ...);
* a content digest of exactly the columns fed to the teacher (input_ids, attention_mask, token_type_ids).
  It costs one cheap pass over the token ids and guards against a fingerprint that does not describe the
  data (e.g. one passed by hand through ``new_fingerprint``): the teacher's output depends only on its
  weights and these tensors, so a hit can never be stale;
* the autocast dtype of the pass, when it runs in reduced precision (``autocast_dtype`` bf16/fp16): such
  logits differ from a float32 pass in the last digits, so the two never stand in for each other. A float32
  pass keeps the key it always had.

Every key part is stored as a string in the safetensors metadata and re-checked on load (`load_checked`),
together with what the cache kind checks (shapes, dtypes, ...), a sha256 of the tensor bytes
(``tensors_sha256``, so bytes overwritten under an intact header are caught) and finiteness: a corrupt or
edited file is logged and rebuilt, never trusted. Freshly computed outputs with NaN/inf are an error, never
cached.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
from collections.abc import Callable

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import UserInputError

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
# Optional inputs forwarded to the teacher when the dataset has them and its forward() accepts them.
_OPTIONAL_INPUTS = ("token_type_ids",)
# Config fields that say where/how the model was loaded, not what it computes.
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "_commit_hash")


def teacher_fingerprint(teacher: torch.nn.Module) -> str:
    """Return a sha256 hex digest of the teacher's class, config and weights (every state_dict tensor's bytes)."""
    hasher = hashlib.sha256()
    hasher.update(type(teacher).__qualname__.encode())
    config = getattr(teacher, "config", None)
    if config is not None:
        cfg = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        hasher.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, tensor in teacher.state_dict().items():
        tensor = tensor.detach()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        # Viewing as bytes works for every dtype (bf16 has no numpy equivalent) and avoids a float copy.
        raw = tensor.reshape(-1).contiguous().cpu().view(torch.uint8).numpy()
        hasher.update(memoryview(raw))
    return hasher.hexdigest()


def input_columns(teacher: torch.nn.Module, dataset: Dataset) -> list[str]:
    """The tokenized columns to feed the teacher: input_ids, attention_mask and the optional ones it accepts."""
    missing = [c for c in ("input_ids", "attention_mask") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"compute_teacher_logits needs a tokenized dataset; column(s) {missing} are missing "
            f"(it has {dataset.column_names}). Tokenize it first, e.g. with hfkit.data.tokenize_dataset."
        )
    params = inspect.signature(teacher.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    columns = ["input_ids", "attention_mask"]
    for name in _OPTIONAL_INPUTS:
        if name in dataset.column_names:
            # A wrapper with **kwargs (e.g. PEFT) passes everything on to the model: feed the column.
            if name in params or takes_any:
                columns.append(name)
            else:
                # e.g. a BERT-tokenized dataset fed to a DistilBERT/MPNet teacher, which has no segment ids.
                logger.debug("teacher %s takes no %s; not feeding that column.", type(teacher).__name__, name)
    return columns


def _content_digest(dataset: Dataset, columns: list[str], chunk_rows: int = 10_000) -> str:
    """sha256 over the token ids actually fed to the teacher (row lengths and flattened values), in row order."""
    hasher = hashlib.sha256()
    table_view = dataset.select_columns(columns).with_format("arrow")
    for start in range(0, len(dataset), chunk_rows):
        chunk = table_view[start : start + chunk_rows]
        for name in columns:
            column = chunk.column(name).combine_chunks()
            hasher.update(name.encode())
            # Lengths pin the row boundaries; flatten() honours slicing, raw offsets would not.
            hasher.update(
                pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64).tobytes()
            )
            hasher.update(column.flatten().to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
    return hasher.hexdigest()


def key_parts(
    teacher: torch.nn.Module, dataset: Dataset, columns: list[str], autocast_dtype: torch.dtype | None = None
) -> dict[str, str]:
    """Every part of the cache key, as strings (stored in the file's metadata and re-checked on load)."""
    config = getattr(teacher, "config", None)
    id2label = getattr(config, "id2label", None) or {}
    parts = {
        "format_version": FORMAT_VERSION,
        "teacher_sha256": teacher_fingerprint(teacher),
        "id2label": json.dumps({str(k): str(v) for k, v in id2label.items()}, sort_keys=True),
        # Not the datasets fingerprint: it names the processing path, so the same tokens reached another way
        # (another recipe, another run's map cache) would miss. The content digest pins what the teacher sees.
        "num_rows": str(len(dataset)),
        "input_columns": ",".join(columns),
        "content_sha256": _content_digest(dataset, columns),
    }
    if autocast_dtype is not None:
        parts["autocast_dtype"] = str(autocast_dtype).removeprefix("torch.")
    return parts


def cache_key(parts: dict[str, str]) -> str:
    """sha256 hex of the key parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def save_atomic(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write to a temp file in the same folder, then os.replace: readers see the old file or the whole new one."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file({name: t.contiguous() for name, t in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a stray temp file behind.
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cache_file(cache_dir: str, prefix: str, key: str) -> str:
    """The path of the cache file for a key: ``<cache_dir>/<prefix><key>.safetensors``."""
    return os.path.join(cache_dir, f"{prefix}{key}.safetensors")


def check_cache_dir(cache_dir: str) -> None:
    """Raise one clear error when the cache folder the user named is an existing file."""
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise UserInputError(
            f"teacher_logits_cache {cache_dir!r} is a file, not a folder: point it at a folder (created if "
            "missing; cache files are named after their key inside it), or move the file away."
        )


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and raw bytes, in name order."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        hasher.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        hasher.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return hasher.hexdigest()


def check_finite(tensor: torch.Tensor, what: str, fix: str) -> None:
    """Raise when freshly computed teacher outputs hold NaN/inf: a cache of them would only poison training."""
    bad_rows = (~torch.isfinite(tensor)).reshape(len(tensor), -1).any(dim=1)
    if bad_rows.any():
        first = int(bad_rows.nonzero()[0])
        raise UserInputError(
            f"the teacher produced non-finite {what} (NaN or inf) in {int(bad_rows.sum())} of {len(tensor)} rows "
            f"(first: row {first}); they were not cached. {fix}"
        )


def save_cache(path: str, tensors: dict[str, torch.Tensor], parts: dict[str, str], **extra: str) -> None:
    """Atomically write the tensors with every key part, the key, their digest and `extra` as metadata."""
    metadata = {**parts, **extra, "key": cache_key(parts), "tensors_sha256": tensors_digest(tensors)}
    save_atomic(path, tensors, metadata)


def load_checked(
    path: str,
    parts: dict[str, str],
    what: str,
    check: Callable[[dict[str, torch.Tensor], dict[str, str]], list[str]],
) -> dict[str, torch.Tensor] | None:
    """The cached tensors, or None (logged) when the file is absent, unreadable or not what the key describes.

    `check(tensors, metadata)` lists what the cache kind finds wrong (names, shapes, dtypes, ...); every
    floating tensor must also be finite.
    """
    if not os.path.exists(path):
        return None
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as err:  # safetensors raises several error types for truncated/garbage files
        logger.warning("%s %s is unreadable (%s); rebuilding it.", what, path, err)
        return None
    problems = [f"{k}: stored {meta.get(k)!r}, expected {v!r}" for k, v in parts.items() if meta.get(k) != v]
    key = cache_key(parts)
    if meta.get("key") != key:
        problems.append(f"key: stored {meta.get('key')!r}, expected {key!r}")
    problems += check(tensors, meta)
    if not problems:
        # Right names, shapes and key, yet bytes changed since the write (disk damage, a hand edit).
        digest = tensors_digest(tensors)
        if meta.get("tensors_sha256") != digest:
            problems.append(
                f"tensors_sha256: stored {meta.get('tensors_sha256')!r}, the tensors give {digest!r}"
            )
        if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            problems.append("non-finite values")
    if problems:
        logger.warning("%s %s does not match (%s); rebuilding it.", what, path, "; ".join(problems))
        return None
    return tensors


def load_or_compute(
    cache_dir: str | None,
    prefix: str,
    parts: Callable[[], dict[str, str]],
    what: str,
    check: Callable[[dict[str, torch.Tensor], dict[str, str]], list[str]],
    compute: Callable[[], dict[str, torch.Tensor]],
    finite: tuple[str, str, str],
    describe: Callable[[dict[str, torch.Tensor]], str],
    metadata: Callable[[dict[str, torch.Tensor]], dict[str, str]] | None = None,
    log: logging.Logger = logger,
) -> tuple[dict[str, torch.Tensor], str | None]:
    """The cache steps every teacher-output kind shares: key, checked load, or compute, finiteness check, save.

    Returns the tensors and the cache file (None without cache_dir). `parts` builds the key parts (called only
    with a cache_dir: the content digest costs a pass over the token ids); `check` is the kind's own file check
    (see `load_checked`); `finite` is (tensor name, what it is, the fix) for `check_finite`; `describe` says
    what was loaded or saved, for `log` (the cache kind's logger); `metadata` adds unkeyed metadata from the
    computed tensors.
    """
    path = key_parts = None
    if cache_dir is not None:
        check_cache_dir(cache_dir)
        key_parts = parts()
        path = cache_file(cache_dir, prefix, cache_key(key_parts))
        cached = load_checked(path, key_parts, what, check)
        if cached is not None:
            log.info("%s hit: loaded %s from %s", what, describe(cached), path)
            return cached, path
    tensors = compute()
    name, label, fix = finite
    check_finite(tensors[name], label, fix)
    if path is not None:
        save_cache(path, tensors, key_parts, **(metadata(tensors) if metadata else {}))
        log.info("%s built: saved %s to %s", what, describe(tensors), path)
    return tensors, path
