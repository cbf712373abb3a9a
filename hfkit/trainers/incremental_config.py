"""Training arguments for updating a deployed classifier with new data or new classes (Learning without Forgetting)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserInputError
from .distill_config import DistillConfig


@dataclass
class IncrementalConfig(DistillConfig):
    """`DistillConfig` for `IncrementalTrainer`: the previous model is the teacher on its own classes.

    Training loss: ``alpha * T^2 * KL(previous_T || updated_T over the old classes) + (1 - alpha) * CE(all
    classes)``; ``alpha = 0`` is plain fine-tuning on the new data. Learning without Forgetting (Li & Hoiem,
    2016) works on logits only, so the hidden-state and attention losses stay off.
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

    def __post_init__(self):
        super().__post_init__()
        if self.hidden_loss_weight > 0 or self.attention_loss_weight > 0:
            raise UserInputError(
                "incremental training distils the previous model's logits only: set hidden_loss_weight 0 and "
                "attention_loss_weight 0 (the updated model has the previous model's layers already)."
            )
