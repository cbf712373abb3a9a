"""Callbacks every hfkit trainer installs: early stopping from the config, the divergence guard, curves."""

from __future__ import annotations

import logging
import math
import os
import re
from typing import TYPE_CHECKING, NoReturn

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from transformers import EarlyStoppingCallback, TrainerCallback

from ..errors import UserInputError
from .base_config import BaseConfig

if TYPE_CHECKING:
    from transformers import Trainer

logger = logging.getLogger(__name__)

__all__ = [
    "CURVES_FILE",
    "DivergenceError",
    "DivergenceGuard",
    "TrainingCurvesCallback",
    "config_callbacks",
    "curve_series",
    "plot_training_curves",
]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class DivergenceError(UserInputError, FloatingPointError):
    """The training loss or the weights became NaN/inf: the run diverged (usually a too-high learning rate)."""


def config_callbacks(args: BaseConfig) -> list[TrainerCallback]:
    """The callbacks the config asks for: training curves, and early stopping when early_stopping_patience is set."""
    callbacks: list[TrainerCallback] = [TrainingCurvesCallback()] if args.plot_curves else []
    if args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    return callbacks


class DivergenceGuard(TrainerCallback):
    """Stop the run when the training loss (or, before a checkpoint, a weight) is NaN/inf.

    The trainer calls `observe` with every micro-batch's loss; the flag and the first bad step stay on the
    device, so training pays no host sync per step. They are read at steps that log, evaluate or save, at
    the end of each epoch and at the end of training: before Trainer writes a checkpoint, so no checkpoint
    is ever saved after the loss became non-finite. Before a save the weights are checked too (one sync):
    an exploded gradient can make them NaN in the very step whose loss was still finite.
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        # On the device: the first optimizer step whose loss was not finite (-1: none yet), that loss, the
        # learning rate then, and that micro-batch's loss components (name -> (weighted value, weight)).
        self._first_bad_step: torch.Tensor | None = None
        self._bad: dict[str, torch.Tensor] = {}

    def observe(
        self,
        loss: torch.Tensor,
        step: int,
        learning_rate: float | None = None,
        parts: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        """Remember, on the device, the first step whose loss is not finite, with its lr and components."""
        loss = loss.detach().float().sum()
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        first = ~torch.isfinite(loss) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(first, step, self._first_bad_step)
        values = {"loss": loss}
        if learning_rate is not None:
            # torch.full launches a fill kernel: unlike a copy from a host number, it never waits for the device.
            values["learning rate"] = torch.full((), float(learning_rate), device=loss.device)
        for name, (value, weight) in (parts or {}).items():
            # A component whose weight is 0 in this micro-batch (e.g. no gold label) is reported as absent.
            values[f"loss_{name}"] = torch.where(weight > 0, value / weight.clamp_min(1e-12), float("inf"))
        for name, value in values.items():
            kept = self._bad.get(name)
            value = value.to(device=loss.device, dtype=torch.float32)
            self._bad[name] = value if kept is None else torch.where(first, value, kept)

    # ---- when to look --------------------------------------------------------------------------------------

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Check before Trainer logs, evaluates or saves at this step (its flags are set by now)."""
        about_to_save = control.should_save or control.should_evaluate or control.should_training_stop
        if about_to_save or control.should_log:
            self.check(model if about_to_save else None)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        """Epoch-strategy saves and evaluations happen after this event: check (weights included) first."""
        self.check(model)

    # ---- the check -----------------------------------------------------------------------------------------

    def check(self, model: torch.nn.Module | None = None) -> None:
        """Raise DivergenceError if a loss since the start was non-finite, or (given a model) a weight is."""
        if self._first_bad_step is not None:
            names = sorted(self._bad)
            state = torch.stack([self._first_bad_step.float(), *(self._bad[n] for n in names)])
            rows = self._gather(state).view(-1, state.numel()).tolist()  # the one host sync of a check
            bad = sorted((row for row in rows if row[0] >= 0), key=lambda row: row[0])
            if bad:
                step, *values = bad[0]
                found = dict(zip(names, values, strict=True))
                self._stop(
                    self._message(
                        f"the training loss is {found.pop('loss')} at step {int(step)}", int(step), found
                    )
                )
        if model is not None:
            self._check_weights(model)

    def _stop(self, message: str) -> NoReturn:
        """Write the curves so far (where the loss went is the first thing to look at), then raise."""
        trainer = self.trainer
        if getattr(trainer.args, "plot_curves", False) and trainer.is_world_process_zero():
            plot_training_curves(
                trainer.state.log_history, os.path.join(trainer.args.output_dir, CURVES_FILE)
            )
        raise DivergenceError(message)

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        accelerator = getattr(self.trainer, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            # Every process checks at the same steps, so this collective is matched; all raise together.
            return accelerator.gather(tensor[None])
        return tensor

    def _check_weights(self, model: torch.nn.Module) -> None:
        params = [p for p in model.parameters() if p.numel()]
        if not params:
            return
        finite = torch.stack([torch.isfinite(p.detach()).all() for p in params]).all().float()
        if self._gather(finite.reshape(1)).min().item() == 1.0:
            return
        names = [n for n, p in model.named_parameters() if p.numel() and not torch.isfinite(p.detach()).all()]
        step = self.trainer.state.global_step
        where = f" ({len(names)} tensors, e.g. {names[0]})" if names else " (on another process)"
        found = {}
        if getattr(self.trainer, "lr_scheduler", None) is not None:
            found["learning rate"] = self.trainer._get_learning_rate()
        self._stop(self._message(f"the weights became NaN/inf{where} at step {step}", step, found))

    def _message(self, what: str, step: int, found: dict[str, float]) -> str:
        """What diverged, the loss components and learning rate, what to change, and what is on disk."""
        trainer = self.trainer
        lr = found.pop("learning rate", None)
        # inf marks a component that had no weight in that micro-batch; a real inf loss is reported as the loss.
        details = [f"{name}={value:.4g}" for name, value in found.items() if value != float("inf")]
        if lr is not None:
            details.append(f"learning rate {lr:.3g}")
        text = f"{what}: the run diverged" + (f" ({', '.join(details)})" if details else "") + ". "
        text += (
            "Lower learning_rate (fine-tuning rates are 1e-5 to 5e-4), keep max_grad_norm at e.g. 1.0, or use "
            "bf16 instead of fp16; if one loss component above is the non-finite one, check its inputs "
            "(e.g. cached teacher logits). "
        )
        saved = _checkpoints_with_losses(trainer)
        if saved:
            listed = ", ".join(f"{name} (last logged loss {loss:.4g})" for name, loss in saved)
            text += (
                f"No checkpoint was saved at or after step {step}. Checkpoints in {trainer.args.output_dir}: {listed}; the "
                "loss can explode before it turns NaN, so check a checkpoint's loss before resuming from it, or "
                "start again in a new output_dir."
            )
        else:
            text += "No checkpoint was saved."
        return text


def _checkpoints_with_losses(trainer) -> list[tuple[str, float]]:
    """The checkpoints in output_dir, newest first, each with the last training loss logged up to its step."""
    out = trainer.args.output_dir
    if not out or not os.path.isdir(out):
        return []
    steps = sorted(
        (int(m.group(1)) for m in map(_CHECKPOINT.match, os.listdir(out)) if m is not None), reverse=True
    )
    history = [e for e in trainer.state.log_history if "loss" in e and "step" in e]
    found = []
    for step in steps:
        losses = [e["loss"] for e in history if e["step"] <= step]
        found.append((f"checkpoint-{step}", losses[-1] if losses else float("nan")))
    return found


# ---- training curves -------------------------------------------------------------------------------------

CURVES_FILE = "training_curves.png"
# Evaluation log entries that are timings or counts, not metrics of the model.
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "tokens", "epoch")


class TrainingCurvesCallback(TrainerCallback):
    """At the end of every run, write `training_curves.png` to output_dir from the Trainer's log history."""

    def on_train_end(self, args, state, control, **kwargs):
        """Main process only: one PNG of the training losses and the validation metrics per evaluation."""
        if state.is_world_process_zero and args.output_dir:
            path = plot_training_curves(state.log_history, os.path.join(args.output_dir, CURVES_FILE))
            if path is not None:
                logger.info("training curves: %s", path)


def curve_series(log_history: list[dict]) -> tuple[dict, dict]:
    """(losses, metrics) from a Trainer log history: name -> [(step, value)], losses with loss_* and eval_loss."""
    losses: dict[str, list[tuple[int, float]]] = {}
    metrics: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "loss" or key.startswith("loss_") or key == "eval_loss":
                losses.setdefault(key, []).append((step, value))
            elif key.startswith("eval_") and not key.endswith(_NOT_METRICS):
                metrics.setdefault(key.removeprefix("eval_"), []).append((step, value))
    return losses, metrics


def plot_training_curves(log_history: list[dict], path: str) -> str | None:
    """Plot training loss (+ each loss_<component>) and the eval metrics per step into a PNG; None if no logs."""
    losses, metrics = curve_series(log_history)
    if not losses and not metrics:
        return None
    panels = [(title, series) for title, series in (("loss", losses), ("validation", metrics)) if series]
    figure = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    FigureCanvasAgg(figure)  # Agg: renders to a file with no display and no global pyplot state
    for axis, (title, series) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for name, points in series.items():
            steps, values = zip(*points, strict=True)
            # One evaluation is a point, not a line: mark every point so single evaluations show.
            axis.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=name)
        finite = [v for points in series.values() for _, v in points if math.isfinite(v)]
        if title == "validation" and finite and max(finite) > 1 and min(finite) > 0:
            axis.set_yscale("log")  # e.g. perplexity next to (or instead of) metrics in [0, 1]
        axis.set_title("training loss" if title == "loss" else "validation metrics")
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
