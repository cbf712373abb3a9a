"""Distil a fine-tuned classifier (teacher), or several (`teachers`), into a smaller student, then compare them.

    hfkit distill --config distill/minilm_l3_sst2 [--key value ...]
    hfkit distill --config distill/minilm_mpnet_to_minilm_l3_sst2     # two teachers
    hfkit distill --config distill/minilm_l3_sst2_llm_labels          # teacher logits in the data (hfkit label)

Order: args -> seed -> data -> teacher -> student -> augment -> tokenize -> teacher logits (cached)
-> train -> save -> side-by-side report (parameters, size, accuracy/F1, CPU latency, speed-up).
"""

from collections.abc import Sequence
from dataclasses import asdict

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
from hfkit.data.augment import AugmentArguments, augment_dataset
from hfkit.errors import UserInputError
from hfkit.evaluation import measure_classifiers
from hfkit.logs import logger, quiet_progress
from hfkit.modeling import (
    DistillModelArguments,
    ModelArguments,
    check_model_labels,
    check_model_weights,
    load_classifier,
    load_tokenizer,
    resolve_model_path,
    same_vocabulary,
)
from hfkit.parsing import parse_args
from hfkit.reports import (
    DistillRecord,
    ModelMeasurement,
    Report,
    comparison_table,
    describe_data,
    validation_source,
)
from hfkit.runtime import RunArguments, begin_run, end_run
from hfkit.student import describe_sizes, student_from_teacher
from hfkit.teacher_cache import TEACHER_LOGITS_COLUMN, TeacherText, add_teacher_outputs
from hfkit.trainers.distill_config import DistillConfig
from hfkit.trainers.distill_trainer import DistillTrainer

ARG_TYPES = (DistillModelArguments, DataArguments, AugmentArguments, DistillConfig, RunArguments)


def load_teacher(name: str, args: DistillModelArguments, labels: list[str]):
    """A fine-tuned teacher and its tokenizer; its label set must be the data's."""
    path = resolve_model_path(name, args.trust_remote_code)
    check_model_weights(path)
    common = {"revision": args.revision, "trust_remote_code": args.trust_remote_code}
    teacher = AutoModelForSequenceClassification.from_pretrained(path, **common)
    check_model_labels(
        teacher, labels, f"teacher {name}",
        "fine-tune the teacher on this data first (hfkit classify) or set class_names to match.",
    )  # fmt: skip
    return teacher, AutoTokenizer.from_pretrained(path, **common), path


def distill_report(
    rows: Sequence[ModelMeasurement],
    student: str,
    teacher: str | list[str],
    data: str | None,
    num_examples: int,
    temperature: float | None = None,
    alpha: float | None = None,
    latency_batch_size: int = 32,
    rounds: int = 15,
) -> Report:
    """Teacher(s) vs student: parameters, size, accuracy/F1 on the validation data, latency timed together."""
    caption = (
        f"Latency: median ms per batch of {latency_batch_size} over {rounds} rounds, both models timed "
        f"round-robin on {_device_name(rows)}; speed-up relative to the teacher."
    )
    return Report(
        name="distill_report",
        title=f"Distilled student {student} vs {_teachers_text(teacher)} on {describe_data(data, num_examples)}",
        tables=[comparison_table(rows, caption)],
        data=asdict(
            DistillRecord(
                student=student,
                teacher=teacher,  # read back by hfkit.hub.card for the model card; a list for several teachers
                data=data,
                validation_examples=num_examples,
                temperature=temperature,
                alpha=alpha,
                latency={"batch_size": latency_batch_size, "rounds": rounds, "statistic": "median"},
                models=list(rows),
            )
        ),
    )


def _teachers_text(teacher: str | list[str]) -> str:
    if isinstance(teacher, str):
        return f"teacher {teacher}"
    return "teachers " + " + ".join(teacher)


def _device_name(rows: Sequence[ModelMeasurement]) -> str:
    return "GPU" if torch.cuda.is_available() else "CPU"


def check_cached_teacher(train, aug_args: AugmentArguments, config: DistillConfig) -> None:
    """Without a named teacher the training rows must carry its logits, and nothing may need the teacher."""
    if TEACHER_LOGITS_COLUMN not in train.column_names:
        raise UserInputError(
            f"no teacher is named and the training data has no '{TEACHER_LOGITS_COLUMN}' column: set "
            "teacher_name_or_path, or label the training text with a teacher first (hfkit label writes the column)."
        )
    if aug_args.augment_copies > 0:
        raise UserInputError(
            "augment_copies needs a teacher to score the new copies, and the teacher here is only its cached logits: "
            "set augment_copies: 0, or name the teacher (teacher_name_or_path)."
        )
    if config.hidden_loss_weight > 0 or config.attention_loss_weight > 0:
        raise UserInputError(
            "hidden/attention losses need a teacher model's layers, and the teacher here is only its cached logits: "
            "set hidden_loss_weight: 0 and attention_loss_weight: 0, or name the teacher."
        )


def main(argv: list[str] | None = None) -> DistillTrainer:
    parsed = parse_args(ARG_TYPES, argv)
    model_args, data_args, aug_args, config, _run_args = parsed
    run = begin_run(parsed)  # logging, resume / finished / refused (output_dir/run.json), seed
    if run is None:  # output_dir holds this run, finished
        return None

    names = model_args.teacher_paths()
    with config.main_process_first(desc="loading data"):
        # No teacher named: the training rows carry the teacher's logits (e.g. an LLM's, from hfkit label).
        raw, labels = load_classification_data(data_args, () if names else (TEACHER_LOGITS_COLUMN,))
    if not names:
        check_cached_teacher(raw["train"], aug_args, config)
    logger.info(
        "data: %s training rows, %s validation rows, labels %s",
        f"{len(raw['train']):,}",
        f"{len(raw['validation']):,}",
        labels,
    )
    config.check_teacher_count(
        max(len(names), 1)
    )  # before any model is loaded: one weight each, no layer losses
    teachers = [load_teacher(name, model_args, labels) for name in names]
    teacher, teacher_tokenizer, teacher_path = teachers[0] if teachers else (None, None, None)
    if model_args.student_name_or_path is None:
        student, tokenizer = teacher, teacher_tokenizer
    else:
        student_args = ModelArguments(
            model_args.student_name_or_path, None, model_args.revision, model_args.trust_remote_code
        )
        student, tokenizer = load_classifier(student_args, labels), load_tokenizer(student_args)
    if model_args.student_layers is not None:
        student = student_from_teacher(student, model_args.student_layers)
    if model_args.student_layers is None and teacher is not None:  # student_from_teacher already said it
        logger.info(describe_sizes(teacher, student))

    text, pair = data_args.text_column, data_args.text_pair_column
    mask_token = tokenizer.mask_token or "[MASK]"
    train_raw = raw["train"]
    if teachers:  # (cached teacher logits come with their rows: check_cached_teacher refused copies)
        train_raw = augment_dataset(
            raw["train"], text, aug_args.augment_copies, aug_args.augment_methods, aug_args.augment_seed,
            aug_args.augment_p, mask_token, pair,
            neighbours=aug_args.neighbours([*raw["train"][text], *(raw["train"][pair] if pair else [])]),
            neighbour_p=aug_args.augment_neighbour_p,
        )  # fmt: skip
    with config.main_process_first(desc="tokenizing"):
        keep = ("labels", TEACHER_LOGITS_COLUMN) if not teachers else ("labels",)
        train = tokenize_dataset(train_raw, tokenizer, text, pair, data_args.max_length, keep)
        validation = tokenize_dataset(raw["validation"], tokenizer, text, pair, data_args.max_length)

    # Precompute the teacher's logits when asked to (cache folder), when the tokenizers differ, or when there
    # are several teachers: each teacher then reads the text with its own tokenizer once, and training needs
    # no teacher in memory. Several teachers: a (num_teachers, num_labels) row of logits per example. Layer
    # transfer runs the teacher in every step (its hidden states), which gives its logits too: no pass first;
    # a teacher of another vocabulary then reads the student's pieces translated to its ids, once the trainer
    # has checked that it cuts every training row alike.
    same_tokens = not teachers or same_vocabulary(tokenizer, teacher_tokenizer)
    online_teacher = config.hidden_loss_weight > 0 or config.attention_loss_weight > 0
    if not teachers:
        pass  # the training rows carry the teacher's logits
    elif not online_teacher and (config.teacher_logits_cache or not same_tokens or len(teachers) > 1):
        with config.main_process_first(desc="teacher logits"):
            train = add_teacher_outputs(
                train,
                [(t, t_tokenizer) for t, t_tokenizer, _ in teachers],
                config,
                tokenizer,
                batch_size=config.per_device_eval_batch_size,
                text=TeacherText(train_raw, text, pair, data_args.max_length),
            )
    elif not online_teacher:
        online_teacher = True  # no cache: the teacher runs in every training step

    trainer = DistillTrainer(
        model=student,
        teacher_model=teacher if online_teacher else None,
        args=config,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        teacher_processing_class=teacher_tokenizer if len(teachers) == 1 else None,
        eval_data_name=validation_source(data_args),
    )
    quiet_progress(trainer)
    logger.info("distilling into the student on %s rows -> %s", f"{len(train):,}", config.output_dir)
    trainer.train(resume_from_checkpoint=run.resume_from)
    trainer.save_model()
    trainer.save_state()

    if trainer.is_world_process_zero():
        # Every model is scored and timed as loaded from disk, all timed together, round-robin. The student's
        # metrics are its evaluation report's (scored as saved, never under the training's autocast): the
        # validation set is scored once per model, and the two reports agree.
        student_metrics = trainer.report["metrics"] if trainer.report else None
        plain = [(trainer.unwrapped(t), tok, path) for t, tok, path in teachers]
        models = {"teacher": plain[0]} if plain else {}
        if (
            len(teachers) > 1
        ):  # teacher0, teacher1, ... in the order given, as in the loss_soft_teacher<i> logs
            models = {f"teacher{i}": loaded for i, loaded in enumerate(plain)}
        models["student"] = (trainer.unwrapped(), tokenizer, config.output_dir)
        rows = measure_classifiers(
            models, raw["validation"], text, pair, data_args.max_length, known_metrics={"student": student_metrics},
        )  # fmt: skip
        report = distill_report(
            rows, config.output_dir,
            names[0] if len(names) == 1 else names or f"cached teacher logits in {data_args.train_file}",
            validation_source(data_args), len(raw["validation"]),
            config.temperature, config.alpha,
        )  # fmt: skip
        report.save(config.output_dir)
        print("\n" + report.text())
    end_run(parsed, run)
    return trainer
