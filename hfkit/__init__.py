"""hfkit: reusable Trainer subclasses for fine-tuning, distilling and shipping Transformers models."""

from .data import DataArguments, load_classification_data, tokenize_dataset
from .modeling import ModelArguments, count_parameters, load_classifier, load_tokenizer
from .student import student_from_teacher
from .trainers.classifier_config import ClassifierConfig
from .trainers.classifier_trainer import ClassifierTrainer
from .trainers.distill_config import DistillConfig
from .trainers.distill_trainer import DistillTrainer

__version__ = "0.1.0"

__all__ = [
    "ClassifierConfig",
    "ClassifierTrainer",
    "DataArguments",
    "DistillConfig",
    "DistillTrainer",
    "ModelArguments",
    "count_parameters",
    "load_classification_data",
    "load_classifier",
    "load_tokenizer",
    "student_from_teacher",
    "tokenize_dataset",
]
