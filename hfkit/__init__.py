"""hfkit: reusable Trainer subclasses for fine-tuning, distilling, compressing and shipping Transformers models.

Trainers and their configs live in hfkit.trainers; compression techniques in hfkit.compress (one a file);
loading any saved folder in hfkit.io; model cards and uploads in hfkit.hub; text generation in
hfkit.generation.
"""

from .noise_filters import quiet_dependencies

quiet_dependencies()  # before transformers' Trainer imports bitsandbytes, whose CPU backend logs at import

from .data import (
    DataArguments,
    LMDataArguments,
    LMDataCollator,
    load_classification_data,
    load_lm_data,
    tokenize_dataset,
)
from .generation import GenerateArguments, generate
from .hub import CardInfo, prepare_upload_folder, push_to_hub, save_model, write_model_card
from .io import TaskKind, load_model
from .modeling import (
    ModelArguments,
    count_parameters,
    load_causal_lm,
    load_classifier,
    load_tokenizer,
)
from .student import student_from_teacher
from .trainers.classifier_config import ClassifierConfig
from .trainers.classifier_trainer import ClassifierTrainer
from .trainers.clm_config import CLMConfig
from .trainers.clm_trainer import CLMTrainer
from .trainers.distill_config import DistillConfig
from .trainers.distill_trainer import DistillTrainer
from .trainers.incremental_config import IncrementalConfig
from .trainers.incremental_trainer import IncrementalTrainer, grow_classifier_head
from .version import __version__ as __version__

__all__ = [
    "CLMConfig",
    "CLMTrainer",
    "CardInfo",
    "ClassifierConfig",
    "ClassifierTrainer",
    "DataArguments",
    "DistillConfig",
    "DistillTrainer",
    "GenerateArguments",
    "IncrementalConfig",
    "IncrementalTrainer",
    "LMDataArguments",
    "LMDataCollator",
    "ModelArguments",
    "count_parameters",
    "generate",
    "grow_classifier_head",
    "load_causal_lm",
    "load_classification_data",
    "load_classifier",
    "load_lm_data",
    "load_model",
    "TaskKind",
    "load_tokenizer",
    "prepare_upload_folder",
    "push_to_hub",
    "save_model",
    "student_from_teacher",
    "tokenize_dataset",
    "write_model_card",
]
