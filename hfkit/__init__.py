"""hfkit: reusable Trainer subclasses for fine-tuning, distilling, compressing and shipping Transformers models.

Trainers and their configs live in hfkit.trainers; compression techniques in hfkit.compress (one a file);
loading any saved folder in hfkit.io; model cards and uploads in hfkit.hub; text generation in
hfkit.generation.

The names below load on first use (PEP 562): `import hfkit` (and so `hfkit --help`) imports neither torch
nor transformers; `from hfkit import DistillTrainer` imports the trainer's module at that moment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .noise_filters import quiet_dependencies

quiet_dependencies()  # before transformers' Trainer imports bitsandbytes, whose CPU backend logs at import

from .version import __version__ as __version__  # noqa: E402

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and the docs
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
    from .modeling import ModelArguments, count_parameters, load_causal_lm, load_classifier, load_tokenizer
    from .student import student_from_teacher
    from .trainers.classifier_config import ClassifierConfig
    from .trainers.classifier_trainer import ClassifierTrainer
    from .trainers.clm_config import CLMConfig
    from .trainers.clm_trainer import CLMTrainer
    from .trainers.distill_config import DistillConfig
    from .trainers.distill_trainer import DistillTrainer
    from .trainers.incremental_config import IncrementalConfig
    from .trainers.incremental_trainer import IncrementalTrainer, grow_classifier_head

# public name -> the module that defines it
_EXPORTS = {
    "DataArguments": ".data",
    "LMDataArguments": ".data",
    "LMDataCollator": ".data",
    "load_classification_data": ".data",
    "load_lm_data": ".data",
    "tokenize_dataset": ".data",
    "ModelArguments": ".modeling",
    "count_parameters": ".modeling",
    "load_causal_lm": ".modeling",
    "load_classifier": ".modeling",
    "load_tokenizer": ".modeling",
    "GenerateArguments": ".generation",
    "generate": ".generation",
    "CardInfo": ".hub",
    "prepare_upload_folder": ".hub",
    "push_to_hub": ".hub",
    "save_model": ".hub",
    "write_model_card": ".hub",
    "TaskKind": ".io",
    "load_model": ".io",
    "student_from_teacher": ".student",
    "ClassifierConfig": ".trainers.classifier_config",
    "ClassifierTrainer": ".trainers.classifier_trainer",
    "CLMConfig": ".trainers.clm_config",
    "CLMTrainer": ".trainers.clm_trainer",
    "DistillConfig": ".trainers.distill_config",
    "DistillTrainer": ".trainers.distill_trainer",
    "IncrementalConfig": ".trainers.incremental_config",
    "IncrementalTrainer": ".trainers.incremental_trainer",
    "grow_classifier_head": ".trainers.incremental_trainer",
}

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


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hfkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
