"""Checkpoints that are complete or ignored.

Writing: `AtomicCheckpointMixin` lets `Trainer._save_checkpoint` write everything into a temporary folder
`_tmp-checkpoint-N/` and renames it to `checkpoint-N` only when every file is written, so a run killed (or out
of disk) mid-save never leaves a `checkpoint-N` that looks resumable but is not. Temporary folders left by a
crash are removed when the next run starts.

`NoTokenOnDisk` keeps the Hub token out of the training_args.bin that every checkpoint holds.

Reading: `find_resumable_checkpoint` picks the newest checkpoint that is complete (trainer_state.json parses,
every weights file is whole, torch.save files are whole zips, the optimizer/scheduler/RNG files exist) and sound
(finite weights, finite logged losses), and says why each newer one was skipped. Checkpoints written by a
plain Trainer or an older hfkit (not atomic) go through the same checks.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..errors import UserInputError
from ..modeling import safetensors_problem

logger = logging.getLogger("hfkit")

STAGING_PREFIX = "_tmp-"  # '_*' is also what Trainer's Hub upload of output_dir leaves out
REPLACED_PREFIX = "_old-"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class NoTokenOnDisk:
    """For a TrainingArguments subclass: its serialized form (training_args.bin in output_dir and every checkpoint, which
    Trainer writes with torch.save) never holds a Hub token; the live object keeps it for pushing."""

    def __getstate__(self) -> dict:
        """The fields torch.save writes, with every `*_token` field set to None."""
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token"):
                state[key] = None
        return state


class AtomicCheckpointMixin:
    """Write each checkpoint into a temporary folder and rename it into place once every file is written.

    Everything `Trainer._save_checkpoint` does is kept (model, optimizer, scheduler, RNG, trainer state,
    best-model tracking, rotation, Hub pushes); only the folder it writes into is redirected while it runs.
    """

    _staging_run_dir: str | None = None

    def _get_output_dir(self, trial) -> str:
        """Trainer asks this where checkpoint-N goes: the temporary folder while a checkpoint is being saved."""
        if self._staging_run_dir is not None:
            return self._staging_run_dir
        return super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push from the final folder, never from the temporary one (the upload runs in the background)."""
        if self._staging_run_dir is None:
            super()._push_from_checkpoint(checkpoint_folder)

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's own checkpoint save, written to `_tmp-checkpoint-N` and renamed to `checkpoint-N`."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_run_dir = os.path.join(run_dir, STAGING_PREFIX + name)
        staged, final = os.path.join(staging_run_dir, name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staging_run_dir, ignore_errors=True)  # left by a crash at this very step
        self.accelerator.wait_for_everyone()
        self._staging_run_dir = staging_run_dir
        try:
            super()._save_checkpoint(model, trial)
            if self.args.should_save and self.state.best_model_checkpoint == staged:
                # Trainer recorded the path it wrote to; the checkpoint lives at `final` from now on.
                self.state.best_model_checkpoint = final
                self.state.save_to_json(os.path.join(staged, "trainer_state.json"))
        except OSError as err:
            if self.args.should_save:
                shutil.rmtree(staging_run_dir, ignore_errors=True)  # frees the space the partial copy took
            if err.errno in _DISK_FULL:
                raise UserInputError(
                    f"no space left on the disk of {run_dir} while saving {name}: free space (or set "
                    "save_total_limit, save_only_model), then rerun the same command; it resumes from the last "
                    "complete checkpoint, which this failed save did not touch."
                ) from err
            raise
        finally:
            self._staging_run_dir = None
        self.accelerator.wait_for_everyone()  # every process has written its files (e.g. rng_state_<rank>.pth)
        if self.args.should_save:
            _replace_folder(staged, final)
            shutil.rmtree(staging_run_dir, ignore_errors=True)
            # Trainer rotated inside the temporary folder; rotate the real checkpoints as it would have.
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self._push_from_checkpoint(final)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """Trainer.train; `resume_from_checkpoint=True` takes the newest complete checkpoint (not just the newest)."""
        out = self.args.output_dir
        if self.args.should_save and os.path.isdir(out):
            remove_partial_checkpoints(out)
        if resume_from_checkpoint is True:
            found, _ = find_resumable_checkpoint(out, self.args)
            if found is None:
                raise UserInputError(f"resume_from_checkpoint=True but {out} holds no complete checkpoint.")
            resume_from_checkpoint = found
        return super().train(resume_from_checkpoint, *args, **kwargs)


def _replace_folder(src: str, dst: str) -> None:
    """Move `src` to `dst` with one rename; an existing `dst` (e.g. from an earlier run) is moved aside first."""
    parent = os.path.dirname(dst)
    aside = None
    if os.path.exists(dst):
        aside = os.path.join(parent, REPLACED_PREFIX + os.path.basename(dst))
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(dst, aside)
    os.rename(src, dst)
    _fsync_dir(parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    # The rename is durable once the parent directory's entry is on disk (POSIX; a no-op where unsupported).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_partial_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """Delete temporary checkpoint folders a killed run left in output_dir; return their names."""
    removed = []
    for entry in sorted(Path(output_dir).iterdir()):
        name = entry.name
        if (
            entry.is_dir()
            and name.startswith((STAGING_PREFIX, REPLACED_PREFIX))
            and PREFIX_CHECKPOINT_DIR in name
        ):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(name)
    if removed:
        logger.info("removed %s left by an interrupted save", ", ".join(removed))
    return removed


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint-N folders of output_dir, newest (highest step) first."""
    found = []
    for entry in Path(output_dir).iterdir():
        match = _CHECKPOINT_RE.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found, reverse=True)]


def checkpoint_problem(folder: str | os.PathLike, args=None, check_values: bool = True) -> str | None:
    """Why `folder` cannot be resumed from (incomplete, unreadable, non-finite), or None if it can.

    `args` (the run's TrainingArguments) says whether optimizer/scheduler/RNG files must be there;
    `check_values` reads every weight to check it is finite (the only check that reads more than headers).
    """
    folder = Path(folder)
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (the save was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return "trainer_state.json is unreadable (the save was interrupted)"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json has no global_step"

    weights = [folder / name for name in _WEIGHTS if (folder / name).is_file()]
    index_file = folder / "model.safetensors.index.json"
    if index_file.is_file():
        try:
            shards = sorted(set(json.loads(index_file.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return "model.safetensors.index.json is unreadable"
        weights += [folder / shard for shard in shards]
    distributed = any(
        p.is_dir() and p.name.startswith(("pytorch_model_fsdp", "global_step")) for p in folder.iterdir()
    )
    if not weights and not distributed:
        return "no model weights"
    for path in weights:
        if not path.is_file():
            return f"{path.name} is missing"
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
            if problem is not None:
                return f"{path.name}: {problem}"

    needs_training_state = args is None or not getattr(args, "save_only_model", False)
    if needs_training_state and not distributed:
        for name in ("optimizer.pt", "scheduler.pt"):
            if not (folder / name).is_file():
                return f"no {name}"
        if not any(folder.glob("rng_state*.pth")):
            return "no rng_state.pth"
    for path in sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth")) + sorted(folder.glob("*.bin")):
        if not zipfile.is_zipfile(
            path
        ):  # torch.save writes a zip archive; a cut one has no central directory
            return f"{path.name} is truncated or not a torch file"

    losses = [e.get("loss") for e in state.get("log_history", []) if isinstance(e, dict)]
    bad = [x for x in losses if isinstance(x, int | float) and not math.isfinite(x)]
    if bad:
        return f"its logged training loss was {bad[0]} (the run had diverged)"
    if check_values:
        for path in weights:
            if path.suffix == ".safetensors":
                name = _first_non_finite(path)
                if name is not None:
                    return f"{path.name} holds non-finite values ({name})"
    return None


def _first_non_finite(path: Path) -> str | None:
    """The first tensor of a safetensors file that holds NaN or inf, one tensor in memory at a time."""
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            tensor = f.get_tensor(key)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return key
    return None


def find_resumable_checkpoint(
    output_dir: str | os.PathLike, args=None
) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest checkpoint of output_dir that can be resumed from, and (folder, reason) for each newer one skipped."""
    skipped = []
    if not os.path.isdir(output_dir):
        return None, skipped
    for folder in checkpoint_folders(output_dir):
        problem = checkpoint_problem(folder, args)
        if problem is None:
            return str(folder), skipped
        skipped.append((str(folder), problem))
    return None, skipped
