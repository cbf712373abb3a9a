"""Update a deployed classifier with new data, and optionally new classes, without forgetting.

    hfkit incremental --config incremental/bbc_add_sports_tech

Order: args -> seed -> previous model -> data (labels onto old + new classes, replay sample of old data)
-> score the previous model -> grow the head -> the previous model's logits on the training rows (cached)
-> train (LwF: its soft labels on the old classes + CE) -> save -> before/after report on old and new
classes. `alpha: 0` is plain fine-tuning on the new data (the baseline that forgets).
"""

import copy
import logging
import os

import numpy as np
from datasets import concatenate_datasets
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.data import DataArguments, load_data_file, tokenize_dataset
from hfkit.data.incremental import (
    IncrementalArguments,
    encode_labels,
    low_margin_scores,
    replay_sample,
    resolve_new_labels,
    text_windows,
)
from hfkit.errors import UserInputError
from hfkit.evaluation import predict_logits
from hfkit.logs import quiet_progress
from hfkit.modeling import check_model_weights, resolve_model_path
from hfkit.parsing import parse_args
from hfkit.reports import Report, Table, describe_data, percent
from hfkit.runtime import RunArguments, begin_run, end_run
from hfkit.teacher_cache import add_teacher_outputs
from hfkit.trainers.classifier_trainer import ClassifierTrainer
from hfkit.trainers.incremental_config import IncrementalConfig
from hfkit.trainers.incremental_trainer import (
    IncrementalTrainer,
    grow_classifier_head,
    imprint_new_classes,
    label_names,
)

logger = logging.getLogger("hfkit.recipes.incremental")

ARG_TYPES = (IncrementalArguments, DataArguments, IncrementalConfig, RunArguments)


def group_accuracy(predicted: np.ndarray, gold: np.ndarray, num_old: int) -> dict[str, float | None]:
    """Accuracy on the old classes' rows, the new classes' rows and all rows (None for an empty group)."""
    right = predicted == gold
    old = gold < num_old

    def mean(mask: np.ndarray) -> float | None:
        return float(right[mask].mean()) if mask.any() else None

    return {"old_classes": mean(old), "new_classes": mean(~old), "all": float(right.mean())}


def confusion_group_accuracy(matrix: list[list[int]], num_old: int) -> dict[str, float | None]:
    """`group_accuracy` from a confusion matrix (rows: gold class, columns: predicted class)."""
    m = np.asarray(matrix)
    right, total = np.diag(m), m.sum(axis=1)

    def mean(rows: slice) -> float | None:
        return float(right[rows].sum() / total[rows].sum()) if total[rows].sum() else None

    return {"old_classes": mean(slice(0, num_old)), "new_classes": mean(slice(num_old, None)),
            "all": float(right.sum() / total.sum())}  # fmt: skip


def incremental_report(
    previous: str, updated: str, old_labels: list[str], new_labels: list[str], before: dict, after: dict,
    train_rows: dict[str, int], validation: str, num_validation: int, alpha: float, temperature: float,
) -> Report:  # fmt: skip
    """Before / after accuracy on the old classes, the new classes and all rows, and the forgetting."""
    forgetting = None if before["old_classes"] is None else before["old_classes"] - after["old_classes"]

    rows = [
        ["before (previous model)", percent(before["old_classes"]), percent(before["new_classes"]), percent(before["all"]), "-"],
        ["after", percent(after["old_classes"]), percent(after["new_classes"]), percent(after["all"]),
         "-" if forgetting is None else f"{100 * forgetting:+.2f} points"],
    ]  # fmt: skip
    added = f"{len(new_labels)} new {new_labels}" if new_labels else "no new classes"
    replayed = f"{train_rows['replay']:,} replayed"
    if train_rows["replay_windows"] != train_rows["replay"]:
        replayed += f" ({train_rows['replay_windows']:,} windows)"
    caption = (
        f"{len(old_labels)} old classes, {added}; {train_rows['new']:,} new rows + {replayed}; LwF alpha "
        f"{alpha}, temperature {temperature}. Forgetting: old-class accuracy before - after."
    )
    return Report(
        name="incremental_report",
        title=f"Incremental update {updated} of {previous} on {describe_data(validation, num_validation)}",
        tables=[Table(["model", "old classes", "new classes", "all", "forgetting (old)"], rows, caption)],
        data={
            "previous_model": previous,
            "old_classes": old_labels,
            "new_classes": new_labels,
            "train_rows": train_rows,
            "validation_rows": num_validation,
            "alpha": alpha,
            "temperature": temperature,
            "before": before,
            "after": after,
            "forgetting": forgetting,
        },
    )


def main(argv: list[str] | None = None):
    parsed = parse_args(ARG_TYPES, argv)
    inc_args, data_args, config, _run_args = parsed
    path = resolve_model_path(inc_args.previous_model)
    if os.path.realpath(config.output_dir) == os.path.realpath(path):
        # Checked before start_run, which with overwrite_output_dir would clear that folder for the new model.
        raise UserInputError(
            f"output_dir {config.output_dir!r} is the previous model's folder: the update would replace the deployed "
            "model in place (overwrite_output_dir or not). Write the updated model to a new output_dir, and deploy "
            "it once its report is checked."
        )
    run = begin_run(parsed)  # logging, resume / finished / refused (output_dir/run.json), seed
    if run is None:  # output_dir holds this run, finished
        return None
    if data_args.train_file is None or data_args.validation_file is None:
        raise UserInputError(
            "incremental training needs train_file (the new data) and validation_file (rows of every class, "
            "old and new, to measure forgetting)."
        )

    check_model_weights(path)
    common = {"revision": "main", "trust_remote_code": False}
    previous = AutoModelForSequenceClassification.from_pretrained(path, **common).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, **common)
    old_labels = label_names(previous)

    new_raw = load_data_file(data_args.train_file, "train_file")
    new_labels = resolve_new_labels(new_raw[data_args.label_column], old_labels, inc_args.new_class_names)
    labels = old_labels + new_labels
    train = encode_labels(new_raw, data_args.label_column, labels, "train_file")
    validation = encode_labels(
        load_data_file(data_args.validation_file, "validation_file"),
        data_args.label_column,
        labels,
        "validation_file",
    )
    old_ids = range(len(old_labels))  # the old classes keep their ids in the grown label set
    if not inc_args.uses_replay and not any(y in old_ids for y in [*train["labels"], *validation["labels"]]):
        # Nothing would keep the old classes in the training, nor show what the update forgets.
        raise UserInputError(
            f"the previous model's classes {old_labels} share nothing with the classes of train_file and "
            f"validation_file {new_labels}: check previous_model and label_column; to add classes to this model, "
            "put rows of its old classes in validation_file (to measure forgetting) or replay its old training rows "
            "(old_train_file with replay_fraction or replay_examples)."
        )
    keep = [data_args.text_column, "labels"]
    train = tokenize_dataset(
        train.select_columns(keep), tokenizer, data_args.text_column, None, data_args.max_length
    )
    validation = tokenize_dataset(
        validation.select_columns(keep), tokenizer, data_args.text_column, None, data_args.max_length
    )
    gold = np.asarray(validation["labels"])
    before = group_accuracy(
        predict_logits(previous, tokenizer, validation, config.per_device_eval_batch_size).argmax(-1),
        gold,
        len(old_labels),
    )

    model = grow_classifier_head(copy.deepcopy(previous), new_labels, seed=config.seed)
    if new_labels and inc_args.new_class_init == "imprint":
        imprint_new_classes(model, train, len(old_labels), tokenizer, config.per_device_eval_batch_size)
    replay, replay_rows = None, 0
    if inc_args.uses_replay:
        old = encode_labels(load_data_file(inc_args.old_train_file, "old_train_file"), data_args.label_column,
                            old_labels, "old_train_file")  # fmt: skip
        n = inc_args.replay_examples or round(inc_args.replay_fraction * len(old))
        # Old class i keeps id i in the grown label set, so only the feature's name list widens.
        old = old.select_columns(keep).cast_column("labels", train.features["labels"])
        scores = None
        if inc_args.replay_selection == "low_margin":  # scored by the grown model, new rows included
            tokens = tokenize_dataset(old, tokenizer, data_args.text_column, None, data_args.max_length)
            logits = predict_logits(model, tokenizer, tokens, config.per_device_eval_batch_size)
            scores = low_margin_scores(logits, np.asarray(old["labels"]))
        replay = replay_sample(old, n, inc_args.replay_seed, scores)
        replay_rows = len(replay)
        if inc_args.replay_windows > 1:
            if data_args.max_length is None:
                raise UserInputError(
                    "replay_windows > 1 needs max_length: the windows are max_length tokens long."
                )
            replay = text_windows(replay, tokenizer, data_args.text_column, data_args.max_length,
                                  inc_args.replay_windows)  # fmt: skip
            logger.info("replay: %d old rows -> %d windows of %d tokens", replay_rows, len(replay),
                        data_args.max_length)  # fmt: skip
        else:
            replay = tokenize_dataset(replay, tokenizer, data_args.text_column, None, data_args.max_length)
            cut = sum(len(ids) >= (data_args.max_length or float("inf")) for ids in replay["input_ids"])
            if cut > len(replay) / 2:  # long documents: the model reads only their first max_length tokens
                logger.info(
                    "replay: %d of %d replayed rows are cut at max_length %d; replay_windows N trains on up to N "
                    "windows of each (BBC News: cells recipe vs recipe_first_window, benchmarks/RESULTS.md)",
                    cut, len(replay), data_args.max_length,
                )  # fmt: skip
        train = concatenate_datasets([train, replay.select_columns(train.column_names)])
    if config.hidden_loss_weight > 0 or config.attention_loss_weight > 0:
        # Feature distillation needs the previous model's hidden states: it runs online, no logit cache.
        trainer = IncrementalTrainer(
            model=model, teacher_model=previous, args=config, train_dataset=train, eval_dataset=validation,
            processing_class=tokenizer, teacher_processing_class=tokenizer,
        )  # fmt: skip
    elif config.alpha > 0:
        # The previous model's logits once (cached in teacher_logits_cache, at teacher_logits_dtype).
        with config.main_process_first(desc="teacher logits"):
            cached = add_teacher_outputs(
                train,
                [(previous, tokenizer)],
                config,
                tokenizer,
                batch_size=config.per_device_eval_batch_size,
            )
        trainer = IncrementalTrainer(
            model=model, args=config, train_dataset=cached,
            eval_dataset=validation, processing_class=tokenizer,
        )  # fmt: skip
    else:  # plain fine-tuning on the new data: no teacher at all
        trainer = ClassifierTrainer(
            model=model, args=config, train_dataset=train, eval_dataset=validation, processing_class=tokenizer
        )
    quiet_progress(trainer)
    trainer.train(resume_from_checkpoint=run.resume_from)
    trainer.save_model()
    trainer.save_state()

    if trainer.is_world_process_zero():
        # The trainer's final report scored the updated model on the validation rows: its confusion matrix
        # gives the after figures without a second pass.
        after = confusion_group_accuracy(trainer.report["confusion_matrix"], len(old_labels))
        report = incremental_report(
            inc_args.previous_model, config.output_dir, old_labels, new_labels, before, after,
            {"new": len(train) - (len(replay) if replay else 0), "replay": replay_rows,
             "replay_windows": len(replay) if replay else 0},
            data_args.validation_file, len(validation), config.alpha, config.temperature,
        )  # fmt: skip
        report.save(config.output_dir)
        print("\n" + report.text())
    end_run(parsed, run)
    return trainer
