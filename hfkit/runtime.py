"""What every recipe does before and around training: logging set-up, what made output_dir (run.json) and
whether to resume, finish or refuse, and how a run ends on a user error (one message, exit code 2)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

try:
    import fcntl
except ImportError:  # not POSIX: no lock on output_dir
    fcntl = None

import huggingface_hub
from transformers import TrainingArguments, set_seed

from .errors import MissingInputError, UserInputError
from .logs import setup_logging
from .trainers.checkpoints import (
    checkpoint_folders,
    checkpoint_problem,
    find_resumable_checkpoint,
    remove_partial_checkpoints,
)
from .version import __version__

logger = logging.getLogger("hfkit")


def checkpoint_to_resume(args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest complete one in output_dir, else None.

    An interrupted run restarted with the same command picks up where it stopped (model, optimizer,
    scheduler, RNG and data position). A checkpoint a kill or a full disk cut short, or one with non-finite
    weights, is skipped with the reason in the log; use another output_dir to start afresh.
    """
    asked = args.resume_from_checkpoint
    if asked:
        if not os.path.isdir(asked):
            raise MissingInputError(
                f"resume_from_checkpoint {asked!r} is not a folder: pass a checkpoint-N folder of an earlier run, "
                "or leave it out to resume from the newest complete checkpoint in output_dir."
            )
        problem = checkpoint_problem(asked, args)
        if problem is not None:
            raise UserInputError(
                f"cannot resume from {asked}: {problem}. Pass another checkpoint-N folder, or leave "
                "resume_from_checkpoint out to take the newest complete one in output_dir."
            )
        return asked
    if not os.path.isdir(args.output_dir):
        return None
    if args.should_save:
        remove_partial_checkpoints(args.output_dir)
    found, skipped = find_resumable_checkpoint(args.output_dir, args)
    for folder, why in skipped:
        logger.warning("skipping %s: %s", folder, why)
    if found is not None:
        why = " (the newest complete checkpoint)" if skipped else ""
        logger.info("resuming from %s%s; use another output_dir to start afresh", found, why)
    elif skipped:
        logger.warning("no complete checkpoint in %s: training starts from the beginning", args.output_dir)
    return found


RUN_FILE = "run.json"
LOCK_FILE = "_run.lock"  # '_*' files are left out of Trainer's Hub uploads
_LOCKS: dict[str, int] = {}  # output_dir -> descriptor of its lock file, held until the process ends
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

# Settings that do not change what a run trains (where it logs, how fast it loads, where it uploads): a rerun
# may change them and still resume. Paths of data files are compared by the files' digests instead.
NOT_IDENTITY = frozenset(
    [
        "output_dir",
        "overwrite_output_dir",
        "keep_checkpoints",
        "resume_from_checkpoint",
        "logging_dir",
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "logging_nan_inf_filter",
        "report_to",
        "run_name",
        "project",
        "trackio_space_id",
        "disable_tqdm",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "dataloader_num_workers",
        "dataloader_prefetch_factor",
        "dataloader_persistent_workers",
        "dataloader_pin_memory",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "save_total_limit",
        "save_on_each_node",
        "save_only_model",
        "report_file",
        "local_rank",
        "debug",
        "per_device_eval_batch_size",
        "eval_accumulation_steps",
        "include_num_input_tokens_seen",
        "skip_memory_metrics",
        "teacher_logits_cache",
        "ddp_timeout",
        "torch_empty_cache_steps",
        "use_cpu",
    ]
)


def _is_secret(name: str) -> bool:
    return name == "token" or name.endswith(("_token", "_password", "_secret"))


@dataclass
class RunArguments:
    """What to do with an output_dir that already holds a run."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an output_dir that holds another run (its checkpoints and run.json are "
            "deleted). Without it a rerun resumes the same run, and refuses a run with other settings."
        },
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "Keep the checkpoint-N folders (weights, optimizer state) once the run has finished. By default "
            "they are deleted after the final model is saved in output_dir: they exist to resume an interrupted "
            "run, and a finished run is never resumed."
        },
    )


@dataclass
class Run:
    """What start_run decided: the checkpoint to resume from (None: from the start), or that it is finished;
    and whether the user asked for push_to_hub (the recipe pushes with `push_finished_run` at the end)."""

    resume_from: str | None = None
    finished: bool = False
    push_to_hub: bool = False


def _plain(value):
    """A JSON value for a config field (enums by value, anything else unknown by str)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def file_digest(path: str) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_record(parsed: Sequence[object]) -> dict:
    """What made a run: every parsed setting (no secrets), the sha256 of each local data file, hfkit's version."""
    config, data = {}, {}
    for obj in parsed:
        for f in dataclasses.fields(obj):
            if not f.init or _is_secret(f.name) or f.name in config:
                continue
            value = getattr(obj, f.name)
            config[f.name] = _plain(value)
            if f.name.endswith("_file") and isinstance(value, str) and os.path.isfile(value):
                data[f.name] = {"path": value, "sha256": file_digest(value)}
    return {"hfkit_version": __version__, "config": config, "data_files": data, "finished": False}


def _changes(old: dict, new: dict) -> list[str]:
    """The settings and data that differ between two run records, as 'what: old -> new' lines."""
    lines = []
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    old_data, new_data = old.get("data_files", {}), new.get("data_files", {})
    for key in new_cfg:
        if key in NOT_IDENTITY or key not in old_cfg:
            continue  # a key added by a newer hfkit is not a change of settings
        if key in new_data and key in old_data:
            if new_data[key]["sha256"] != old_data[key]["sha256"]:
                lines.append(f"{key} {new_data[key]['path']}: its contents differ from the run's")
            continue  # same bytes under another path is the same data
        if old_cfg[key] != new_cfg[key]:
            lines.append(f"{key}: {old_cfg[key]!r} -> {new_cfg[key]!r}")
    return lines


def _write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def start_run(parsed: Sequence[object]) -> Run:
    """Check output_dir against what made it (run.json): resume the same run, say a finished one is finished,
    refuse one with other settings; with overwrite_output_dir, clear it and start afresh.

    `parsed` is the recipe's tuple from parse_args (its TrainingArguments and RunArguments among them).
    """
    args = next(p for p in parsed if isinstance(p, TrainingArguments))
    overwrite = any(getattr(p, "overwrite_output_dir", False) for p in parsed)
    out = args.output_dir
    if args.push_to_hub and huggingface_hub.get_token() is None:
        # Checked before hours of training, not when the upload finally fails.
        raise UserInputError(
            "push_to_hub is true but no Hugging Face token is set: set the HF_TOKEN environment variable or run "
            "`hf auth login` (or set push_to_hub: false and push later with recipes/push.py)."
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserInputError(f"output_dir {out!r} is a file: pass a folder (new or from an earlier run).")
    if args.should_save:
        with _writing(out):
            os.makedirs(out, exist_ok=True)
            _lock_output_dir(out)
    record, run_file = run_record(parsed), os.path.join(out, RUN_FILE)
    old = None
    if os.path.isfile(run_file):
        try:
            with open(run_file, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as err:
            raise UserInputError(
                f"{run_file} is unreadable ({err}): use a new output_dir, or --overwrite_output_dir true."
            ) from err

    if overwrite and os.path.isdir(out):
        if args.should_save:
            _clear_run(out)
        old = None
    elif old is not None:
        changes = _changes(old, record)
        # Refuse only when something of the old run is there: a run that failed before its first checkpoint
        # (a bad setting, fixed now) leaves nothing to mix with.
        if changes and (old.get("finished") or checkpoint_folders(out)):
            listed = "\n  ".join(changes[:10]) + ("\n  ..." if len(changes) > 10 else "")
            raise UserInputError(
                f"output_dir {out} holds a run made with other settings:\n  {listed}\n"
                "Use a new output_dir for these settings, or pass --overwrite_output_dir true to delete that "
                "run's checkpoints and start afresh there."
            )
        if old.get("finished"):
            if args.should_log:
                print(
                    f"{out} already holds this run, finished with the same settings: nothing to train (the model "
                    "is in that folder). To train again, use a new output_dir or pass --overwrite_output_dir true."
                )
            return Run(finished=True)
    elif os.path.isdir(out) and checkpoint_folders(out):
        logger.warning(
            "%s has checkpoints but no %s: their settings cannot be checked against these", out, RUN_FILE
        )

    if args.should_save:
        with _writing(out):
            _write_json_atomic(run_file, record)
    # Trainer's own pushing uploads output_dir as it stands (training_args.bin, torch-serialized, and run.json among it)
    # at every save: off. The recipe pushes the finished model through hfkit's checked upload instead.
    push, args.push_to_hub = args.push_to_hub, False
    return Run(resume_from=None if overwrite else checkpoint_to_resume(args), push_to_hub=push)


def begin_run(parsed: Sequence[object]) -> Run | None:
    """A training recipe's opening: logging set up, the output folder checked against what made it (resume,
    finished, refused: `start_run`), the seed set. None when output_dir already holds this finished run."""
    config = next(p for p in parsed if isinstance(p, TrainingArguments))
    setup_logging(config)
    run = start_run(parsed)  # resume, finished, or refused: output_dir/run.json says what made it
    if run.finished:
        return None
    set_seed(config.seed)
    return run


def end_run(parsed: Sequence[object], run: Run) -> None:
    """A training recipe's closing: checkpoints cleared unless kept, model card written (`finish_run`), and the
    finished folder pushed through the checked upload when push_to_hub asked for it."""
    config = next(p for p in parsed if isinstance(p, TrainingArguments))
    run_args = next((p for p in parsed if isinstance(p, RunArguments)), RunArguments())
    finish_run(config, run_args.keep_checkpoints)
    if run.push_to_hub:
        push_finished_run(config)


@contextlib.contextmanager
def _writing(out: str):
    """Turn the OS errors of writing into output_dir that the user can fix into one clear message."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL:
            raise UserInputError(f"no space left on the disk of output_dir {out}: free space first.") from err
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UserInputError(
                f"cannot write to output_dir {out} ({err.strerror}): pass another folder."
            ) from err
        raise


def _lock_output_dir(out: str) -> None:
    """Hold an exclusive lock on output_dir for the rest of this process: two runs writing the same
    checkpoints (the same command started twice) would mix them. Reentrant within one process."""
    key = os.path.realpath(out)
    if key in _LOCKS or fcntl is None:
        return
    fd = os.open(os.path.join(out, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise UserInputError(
                f"output_dir {out} is in use by another run that is still going: wait for it to end or stop it, "
                "or use another output_dir."
            ) from err
        logger.warning("could not lock %s (%s): make sure no other run writes there", out, err.strerror)
        return
    _LOCKS[key] = fd


def _clear_run(out: str) -> None:
    """Delete what another run left in output_dir: its checkpoints, temporary folders and run.json."""
    removed = [p.name for p in checkpoint_folders(out)]
    for folder in checkpoint_folders(out):
        shutil.rmtree(folder)
    remove_partial_checkpoints(out)
    if os.path.isfile(os.path.join(out, RUN_FILE)):
        os.remove(os.path.join(out, RUN_FILE))
    if removed:
        logger.warning("overwrite_output_dir: deleted %s of the earlier run in %s", ", ".join(removed), out)


def finish_run(args: TrainingArguments, keep_checkpoints: bool = False, model_card: bool = True) -> None:
    """End a run whose model is saved in output_dir: write its model card (README.md, from what the run recorded),
    delete its checkpoints unless `keep_checkpoints`, and mark run.json finished, so a rerun of the same command
    says so instead of training 0 steps. Main process only; a card that cannot be built costs a warning, not the run.
    """
    out = args.output_dir
    run_file = os.path.join(out, RUN_FILE)
    if not args.should_save or not os.path.isfile(run_file):
        return
    done = []  # one line at the end of a run: what this step wrote and removed
    if model_card:
        # hub imports the trainers' reports: loaded only at the end of a run.
        from .hub import write_model_card

        try:
            done.append(f"model card {write_model_card(out)}")
        except Exception as err:  # noqa: BLE001 - the model is saved; a card problem must not fail the run
            logger.warning(
                "model card not written (%s: %s): `hfkit push` builds it again", type(err).__name__, err
            )
    with open(run_file, encoding="utf-8") as f:
        record = json.load(f)
    record["finished"] = True
    _write_json_atomic(run_file, record)
    if not keep_checkpoints:  # after the run is marked finished: a kill in between leaves a finished run
        folders = checkpoint_folders(out)[::-1]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        if folders:
            names = ", ".join(p.name for p in folders)
            done.append(f"deleted {names} (a finished run is not resumed; keep_checkpoints: true keeps them)")
    if done:
        logger.info("finished: %s", "; ".join(done))


def push_finished_run(args: TrainingArguments) -> None:
    """Push the model saved in output_dir as `hfkit push` does: only the files that load it, plus its card.

    The repo is hub_model_id, else the output_dir's name in the token's namespace (as Trainer names it); it is
    created private unless hub_private_repo is false (`hfkit push`'s default). Main process only.
    """
    if not args.should_save:
        return
    # hub imports the trainers' reports: loaded only at the end of a run.
    from .hub import prepare_upload_folder, push_to_hub

    out = os.path.abspath(args.output_dir)
    repo_id = args.hub_model_id or os.path.basename(out)
    if "/" not in repo_id:
        repo_id = f"{huggingface_hub.whoami()['name']}/{repo_id}"
    # Staged beside output_dir (never listed among the run's files; a kill leaves nothing in it); removed after.
    with tempfile.TemporaryDirectory(
        prefix=f".{os.path.basename(out)}_upload_", dir=os.path.dirname(out)
    ) as tmp:
        folder = prepare_upload_folder(out, tmp, repo_id=repo_id)
        push_to_hub(folder, repo_id, private=args.hub_private_repo is not False)
    logger.info("pushed %s to https://huggingface.co/%s", out, repo_id)


DEBUG_FLAG = "--debug"
DEBUG_ENV = "HFKIT_DEBUG"


def _debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether the traceback of a user error is wanted, and argv without hfkit's own bare --debug flag."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    # TrainingArguments has its own `--debug <option>`: only a bare --debug (no value after it) is ours.
    rest, flag = [], False
    for i, arg in enumerate(argv):
        takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("-")
        if arg == DEBUG_FLAG and not takes_value:
            flag = True
        else:
            rest.append(arg)
    return env or flag, rest


def _as_user_error(err: BaseException) -> UserInputError | None:
    """The user error an exception stands for (a full disk is the user's to fix too), or None for a bug."""
    if isinstance(err, UserInputError):
        return err
    if isinstance(err, OSError) and err.errno in DISK_FULL:
        where = f" while writing {err.filename}" if err.filename else ""
        return UserInputError(
            f"no space left on the disk{where}: free space, then rerun the same command (it resumes from the "
            "newest complete checkpoint)."
        )
    return None


def run_recipe(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> None:
    """Run a recipe's `main(argv)`; a user error ends it with one message on stderr and exit code 2.

    Tracebacks of user errors are shown with --debug or HFKIT_DEBUG=1; any other exception is a bug (in hfkit
    or a library) and propagates with its traceback, exit code 1. Ctrl-C says how to resume (exit code 130).
    """
    debug, args = _debug_requested(list(sys.argv[1:] if argv is None else argv))
    try:
        main(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(
            "interrupted: rerun the same command to resume from the newest complete checkpoint.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except Exception as err:
        user_error = _as_user_error(err)
        if user_error is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None
