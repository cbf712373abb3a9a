"""What every hfkit Trainer shares: a NaN guard on the training loss, and how a teacher is prepared."""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import get_last_checkpoint


class FiniteLossMixin:
    """Stop with a clear error, naming the last good checkpoint, when the training loss turns NaN/inf."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        """One optimizer micro-step; stops with a clear error (not a NaN checkpoint) if the loss diverges."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            out = self.args.output_dir
            last = get_last_checkpoint(out) if os.path.isdir(out) else None
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.state.global_step}: the run diverged. "
                "Lower learning_rate, keep max_grad_norm (e.g. 1.0), or use bf16 instead of fp16. "
                + (
                    f"Resume from the last good checkpoint {last} with --resume_from_checkpoint."
                    if last
                    else ""
                )
            )
        return loss


def prepare_teacher(trainer: Trainer, teacher: PreTrainedModel, cached_alternative: str) -> nn.Module:
    """Freeze the teacher and let the accelerator place it: eval mode, no gradients, never wrapped in DDP.

    `cached_alternative` tells the user how to train without a live teacher where one cannot be placed.
    """
    shared = {id(p) for p in teacher.parameters()} & {id(p) for p in trainer.model.parameters()}
    if shared:
        raise ValueError(
            "the teacher shares parameters with the student, so freezing the teacher would freeze them in the "
            "student too; build the student as an independent copy (e.g. hfkit.student_from_teacher)."
        )
    teacher.eval()
    teacher.requires_grad_(False)
    if trainer.is_deepspeed_enabled:
        raise ValueError(
            f"{type(trainer).__name__} does not place an online teacher under DeepSpeed; use DDP/FSDP, or "
            f"{cached_alternative}."
        )
    # evaluation_mode=True: on the device and under the student's mixed-precision autocast, but never
    # wrapped in DDP, since it has no gradients to synchronise. One place decides device and precision.
    return trainer.accelerator.prepare_model(teacher, evaluation_mode=True)
