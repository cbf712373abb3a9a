"""Training arguments for updating a deployed classifier with new data or new classes (Learning without Forgetting)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .distill_config import DistillConfig


@dataclass
class IncrementalConfig(DistillConfig):
    """`DistillConfig` for `IncrementalTrainer`: the previous model is the teacher on its own classes.

    Training loss: ``alpha * T^2 * KL(previous_T || updated_T over the old classes) + (1 - alpha) * CE(all
    classes)``; ``alpha = 0`` is plain fine-tuning on the new data (Learning without Forgetting, Li & Hoiem, 2016).
    ``hidden_loss_weight`` > 0 adds feature distillation from the previous model (its hidden states over
    `layer_map`, e.g. ``"6:6"`` for the last layer, ``hidden_loss_type`` mse or cosine): the previous model then
    runs in every training step instead of from cached logits.
    """

    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight in [0, 1] of the LwF term (the previous model's soft labels on its own classes); "
            "the cross-entropy on gold labels gets 1 - alpha. 0: plain fine-tuning, which forgets."
        },
    )

    align_new_classes: bool = field(
        default=False,
        metadata={
            "help": "After training, scale the new classes' output rows (weights and bias) so their mean norm "
            "equals the old classes' (Weight Aligning, Zhao et al. 2020): an update trained mostly on new-class "
            "rows grows those rows and then calls old-class inputs new; aligning removes that bias."
        },
    )
