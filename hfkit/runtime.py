"""What every recipe does before and around training: logging set-up and finding the run to resume."""

from __future__ import annotations

import logging
import os

import datasets
import transformers
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger("hfkit")


def setup_logging(args: TrainingArguments) -> None:
    """INFO from hfkit and transformers on the main process, warnings only on the others."""
    level = logging.INFO if args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(logging.WARNING)


def checkpoint_to_resume(args: TrainingArguments) -> str | bool | None:
    """The checkpoint to resume from: the one asked for, else the last one in output_dir, else None.

    An interrupted run restarted with the same command picks up where it stopped (model, optimizer,
    scheduler, RNG and data position); use another output_dir to start afresh.
    """
    if args.resume_from_checkpoint:
        return args.resume_from_checkpoint
    if not os.path.isdir(args.output_dir):
        return None
    last = get_last_checkpoint(args.output_dir)
    if last is not None:
        logger.info("resuming from %s (use another output_dir to start afresh)", last)
    return last
