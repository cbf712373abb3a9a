"""What every recipe does before and around training: logging set-up, finding the run to resume, and how
a run ends on a user error (one message, exit code 2)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

import datasets
import transformers
from transformers import TrainingArguments

from .errors import MissingInputError, UserInputError
from .trainers.checkpoints import checkpoint_problem, find_resumable_checkpoint, remove_partial_checkpoints

logger = logging.getLogger("hfkit")


def setup_logging(args: TrainingArguments) -> None:
    """INFO from hfkit and transformers on the main process, warnings only on the others."""
    level = logging.INFO if args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(logging.WARNING)


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


def run_recipe(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> None:
    """Run a recipe's `main(argv)`; a user error ends it with one message on stderr and exit code 2.

    Tracebacks of user errors are shown with --debug or HFKIT_DEBUG=1; any other exception is a bug (in hfkit
    or a library) and propagates with its traceback, exit code 1.
    """
    debug, args = _debug_requested(list(sys.argv[1:] if argv is None else argv))
    try:
        main(args)
    except UserInputError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
