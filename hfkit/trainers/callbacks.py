"""Callbacks every hfkit trainer installs: early stopping from the config, the divergence guard, curves."""

from __future__ import annotations

from transformers import EarlyStoppingCallback, TrainerCallback

from .base_config import BaseConfig


def config_callbacks(args: BaseConfig) -> list[TrainerCallback]:
    """The callbacks the config asks for: early stopping when early_stopping_patience is set."""
    callbacks: list[TrainerCallback] = []
    if args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    return callbacks
