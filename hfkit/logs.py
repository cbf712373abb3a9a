"""What a run prints: hfkit's one line per phase, the libraries' logs only when asked, dependency noise filtered.

Quiet by default: transformers and datasets at WARNING and without their own progress bars; the
Trainer keeps its training and evaluation bars, with the loss on the bar instead of a printed dict per
logging step. `--log_level info` (or debug) brings every library log back. The few messages dependencies
print on every run that tell the user nothing are filtered on the dependencies' own loggers, never by
redirecting stderr; every other warning still shows (`hfkit/noise_filters.py`: standard library only, so
`hfkit/__init__.py` installs the filters before transformers' Trainer imports bitsandbytes).
"""

from __future__ import annotations

import logging

import datasets
import transformers
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .noise_filters import quiet_dependencies

logger = logging.getLogger("hfkit")


class _PhaseFormatter(logging.Formatter):
    """hfkit's phase lines as 'HH:MM:SS message'; warnings and errors also name their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        self._style._fmt = (
            "%(asctime)s %(message)s"
            if record.levelno < logging.WARNING
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return super().format(record)


def verbose_logging(args: TrainingArguments) -> bool:
    """Whether the user asked for the libraries' INFO logs (`--log_level info` or debug)."""
    return args.log_level in ("info", "debug")


def setup_logging(args: TrainingArguments) -> None:
    """One line per phase from hfkit on the main process; transformers and datasets say only what matters.

    Quiet by default: transformers and datasets at WARNING, without their own progress bars (weight loading,
    shard writing, dataset maps); the Trainer keeps its training and evaluation bars. `--log_level info`
    (or debug) brings all of their logs back.
    """
    quiet_dependencies()
    if not any(isinstance(h.formatter, _PhaseFormatter) for h in logging.getLogger().handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(_PhaseFormatter(datefmt="%H:%M:%S"))
        logging.getLogger().addHandler(handler)
    logger.setLevel(logging.INFO if args.should_log else logging.WARNING)
    _one_handler()
    if verbose_logging(args):
        level = args.get_process_log_level()
        transformers.utils.logging.set_verbosity(level)
        datasets.utils.logging.set_verbosity(level)
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()
        return
    transformers.utils.logging.set_verbosity(logging.WARNING if args.should_log else logging.ERROR)
    datasets.utils.logging.set_verbosity(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _one_handler() -> None:
    """transformers and datasets log through the root handler above, once, in hfkit's format. Left alone, each
    library also has its own stderr handler: transformers propagates to the root when `CI` is set, datasets
    always, so every warning would print twice."""
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    library = logging.getLogger("datasets")
    for handler in list(library.handlers):
        if type(handler) is logging.StreamHandler:  # datasets' default handler (stderr)
            library.removeHandler(handler)
    library.propagate = True


class QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bars, with the running loss on the training bar instead of a printed dict
    per logging step (the logs still reach trainer_state.json and every `report_to` integration)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            shown = {k: logs[k] for k in ("loss", "learning_rate") if isinstance(logs.get(k), int | float)}
            self.training_bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)


def quiet_progress(trainer: Trainer) -> None:
    """No printed dict per logging step unless the user asked for verbose logs: the progress bar shows the
    loss instead (`QuietProgressCallback`); with disable_tqdm nothing is printed (the Trainer's PrinterCallback
    goes). The logs still reach trainer_state.json and every `report_to` integration."""
    if verbose_logging(trainer.args):
        return
    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    else:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(QuietProgressCallback())
