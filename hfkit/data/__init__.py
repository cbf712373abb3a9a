"""Data for every trainer: local files or the Hub (sources), classification, causal-LM, augmentation."""

from .augment import AugmentArguments, augment_dataset, replace_mask_token
from .classification import DataArguments, load_classification_data, load_raw_datasets, tokenize_dataset
from .lm import LMDataArguments, LMDataCollator, build_lm_dataset, lm_pad_token_id, load_lm_data
from .sources import DataSourceArguments, load_data_file

__all__ = [
    "AugmentArguments",
    "DataArguments",
    "DataSourceArguments",
    "LMDataArguments",
    "LMDataCollator",
    "augment_dataset",
    "build_lm_dataset",
    "lm_pad_token_id",
    "load_classification_data",
    "load_data_file",
    "load_lm_data",
    "load_raw_datasets",
    "replace_mask_token",
    "tokenize_dataset",
]
