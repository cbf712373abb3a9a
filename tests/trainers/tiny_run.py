"""A tiny, deterministic ClassifierTrainer run that resumes like a recipe: the target of the kill-during-save test.

    python tests/trainers/tiny_run.py OUTPUT_DIR [SLOW_SAVE_SECONDS]

A checkpoint every step; SLOW_SAVE_SECONDS stretches every torch.save of a checkpoint so a kill lands mid-save.
"""

from __future__ import annotations

import logging
import sys
import time

import torch
from transformers import BertForSequenceClassification, BertTokenizerFast

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.runtime import checkpoint_to_resume
from tests.conftest import SPECIAL, WORDS, tiny_bert_config, toy_dataset

MAX_STEPS = 12


def main(output_dir: str, slow_save: float = 0.0) -> None:
    if slow_save:
        real_save = torch.save

        def save(obj, path, *args, **kwargs):
            time.sleep(slow_save)
            return real_save(obj, path, *args, **kwargs)

        torch.save = save
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("hfkit").setLevel(logging.INFO)  # "resuming from ..." as in a recipe's log
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(SPECIAL + WORDS)}, do_lower_case=True)
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(tokenizer, id2label={0: "bad", 1: "good"}))
    args = ClassifierConfig(
        output_dir=output_dir, use_cpu=True, report_to="none", disable_tqdm=True, learning_rate=1e-3,
        per_device_train_batch_size=8, max_steps=MAX_STEPS, eval_strategy="no", save_strategy="steps",
        save_steps=1, save_total_limit=3, logging_steps=1, seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=model, args=args, train_dataset=toy_dataset(tokenizer, 64, seed=1), processing_class=tokenizer
    )
    trainer.train(resume_from_checkpoint=checkpoint_to_resume(args))
    trainer.save_model()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
