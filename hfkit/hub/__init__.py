"""Ship a model: its model card (card.py, huggingface_hub ModelCard) and the checked upload (upload.py)."""

from .card import CardInfo, collect_card_info, model_card, write_model_card
from .upload import UPLOAD_PATTERNS, prepare_upload_folder, push_to_hub, save_model

__all__ = [
    "UPLOAD_PATTERNS",
    "CardInfo",
    "collect_card_info",
    "model_card",
    "prepare_upload_folder",
    "push_to_hub",
    "save_model",
    "write_model_card",
]
