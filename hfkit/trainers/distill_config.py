"""Training arguments for knowledge distillation of a sequence classifier into a smaller student."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UserInputError
from ..losses import TEACHER_COMBINATIONS, check_temperature
from ..teacher_cache.settings import TEACHER_LOGITS_DTYPES, TeacherCacheArguments  # noqa: F401 (old home)
from .base_config import check_unit_interval
from .classifier_config import ClassifierConfig

HIDDEN_LOSS_TYPES = ("mse", "cosine")
ATTENTION_LOSS_TYPES = ("kl", "mse")

_PAIR = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_layer_map(spec: str) -> list[tuple[int, int]] | None:
    """Parse 'uniform' (-> None) or 'teacher:student,...' pairs in hidden-state indexing into int pairs."""
    if spec.strip().lower() == "uniform":
        return None
    pairs = []
    for item in spec.split(","):
        match = _PAIR.match(item)
        if match is None:
            raise UserInputError(
                f"layer_map {spec!r}: cannot parse {item.strip()!r}. Use 'uniform' or comma-separated "
                "'teacher:student' pairs of non-negative layer indices in hidden-state indexing "
                "(0 = embeddings output), e.g. '0:0,2:1,4:2'."
            )
        pairs.append((int(match.group(1)), int(match.group(2))))
    if len(set(pairs)) != len(pairs):
        raise UserInputError(f"layer_map {spec!r} lists a pair twice; list each teacher:student pair once.")
    return pairs


@dataclass
class DistillConfig(TeacherCacheArguments, ClassifierConfig):
    """`ClassifierConfig` for `DistillTrainer`: loss weights, temperature and layer map of the distillation.

    Training loss: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``
    (rows labelled -100 get the soft term only) ``+ hidden_loss_weight * hidden-state loss
    + attention_loss_weight * attention loss`` over the mapped layers. Evaluation loss: the student's
    plain cross-entropy, as in `ClassifierTrainer`, so runs stay comparable. With several teachers the KL
    target is their softened probabilities combined by `teacher_combination` (logit-level losses only).
    ``teacher_logits_cache`` / ``teacher_logits_dtype`` come from `hfkit.teacher_cache.TeacherCacheArguments`.
    """

    temperature: float = field(
        default=2.0,
        metadata={"help": "Softmax temperature of the soft (KL) term; > 0. Higher: softer targets."},
    )
    alpha: float = field(
        default=0.5,
        metadata={"help": "Weight of the soft KL term in [0, 1]; the hard cross-entropy gets 1 - alpha."},
    )
    hidden_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the hidden-state loss over the layer map (TinyBERT); 0 turns it off."},
    )
    hidden_loss_type: str = field(
        default="mse", metadata={"help": "Hidden-state loss: 'mse' or 'cosine' (1 - cosine similarity)."}
    )
    attention_loss_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the attention-map loss over the layer map (MiniLM); 0 turns it off."},
    )
    attention_loss_type: str = field(
        default="kl",
        metadata={"help": "Attention loss: 'kl' (MiniLM) or 'mse' (TinyBERT, on probabilities)."},
    )
    layer_map: str = field(
        default="uniform",
        metadata={
            "help": "Teacher-to-student layer pairs for the hidden/attention losses: 'uniform' (student layer j "
            "-> teacher layer round(j * T / S), plus embeddings) or 'teacher:student' pairs in hidden-state "
            "indexing, 0 = embeddings output, e.g. '0:0,2:1,4:2,6:3'."
        },
    )
    teacher_combination: str = field(
        default="mean",
        metadata={
            "help": "With several teachers, how their soft targets make the one target of the KL term: 'mean' "
            "(the average of the teachers' probabilities at the temperature), 'weighted' (the same with the fixed "
            "teacher_weights), 'confidence' (per example, each teacher weighted by its max probability at T = 1, "
            "so unsure teachers count less) or 'gold' (per example, each teacher weighted by the probability it "
            "gives the gold label at T = 1, so teachers that are wrong on an example count less; rows without a "
            "gold label use the mean). Each teacher's own KL is logged as loss_soft_teacher<i>. One teacher: "
            "ignored."
        },
    )
    teacher_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "One weight >= 0 per teacher, in teacher order, for teacher_combination 'weighted' (normalised "
            "to sum to 1), e.g. 1 2."
        },
    )

    def __post_init__(self):
        check_temperature(self.temperature, "1 to 4")
        check_unit_interval(
            "alpha", self.alpha, "weight of the soft KL term; 1 - alpha weights the hard loss"
        )
        for name in ("hidden_loss_weight", "attention_loss_weight"):
            if getattr(self, name) < 0:
                raise UserInputError(
                    f"{name} must be >= 0 (0 turns the loss off), got {getattr(self, name)}."
                )
        if self.hidden_loss_type not in HIDDEN_LOSS_TYPES:
            raise UserInputError(
                f"hidden_loss_type must be one of {HIDDEN_LOSS_TYPES}, got {self.hidden_loss_type!r}."
            )
        if self.attention_loss_type not in ATTENTION_LOSS_TYPES:
            raise UserInputError(
                f"attention_loss_type must be one of {ATTENTION_LOSS_TYPES}, got {self.attention_loss_type!r}."
            )
        if self.teacher_combination not in TEACHER_COMBINATIONS:
            raise UserInputError(
                f"teacher_combination must be one of {TEACHER_COMBINATIONS}, got {self.teacher_combination!r}."
            )
        self._check_teacher_weights()
        # Parsed form of layer_map (None = uniform, resolved by the trainer once the layer counts are known);
        # layer_map itself stays a string so the config round-trips through HfArgumentParser and JSON.
        self.layer_pairs: list[tuple[int, int]] | None = parse_layer_map(self.layer_map)
        super().__post_init__()

    def _check_teacher_weights(self) -> None:
        """teacher_weights go with teacher_combination 'weighted', and only with it; >= 0 with a positive sum."""
        weights, rule = self.teacher_weights, self.teacher_combination
        if rule == "weighted" and not weights:
            raise UserInputError(
                "teacher_combination 'weighted' needs teacher_weights: one weight per teacher, in teacher order "
                "(e.g. teacher_weights: [1, 2]), or choose teacher_combination 'mean'."
            )
        if weights and rule != "weighted":
            raise UserInputError(
                f"teacher_weights {weights} are only used by teacher_combination 'weighted', but it is {rule!r}: "
                "set teacher_combination: weighted, or drop teacher_weights."
            )
        if weights and (any(not w >= 0 for w in weights) or not sum(weights) > 0):
            raise UserInputError(
                f"teacher_weights {weights} must be >= 0 with a positive sum (they are normalised to sum to 1)."
            )

    def check_teacher_count(self, num_teachers: int) -> None:
        """Settings that depend on how many teachers there are: one weight each; layer losses take one teacher."""
        if self.teacher_weights and len(self.teacher_weights) != num_teachers:
            raise UserInputError(
                f"teacher_weights {self.teacher_weights} has {len(self.teacher_weights)} values for {num_teachers} "
                f"teachers: give exactly one weight per teacher, in teacher order."
            )
        if num_teachers > 1 and (self.hidden_loss_weight > 0 or self.attention_loss_weight > 0):
            raise UserInputError(
                f"hidden_loss_weight / attention_loss_weight transfer one teacher's layers, but {num_teachers} "
                "teachers are given: set hidden_loss_weight=0 and attention_loss_weight=0 (several teachers "
                "teach through their combined logits), or distil from one teacher."
            )
