"""Compress a trained classifier for deployment and report every variant side by side.

    hfkit compress --config compress/minilm_l3_sst2 [--key value ...]

Order: args -> data (the same split as training) -> measure teacher and student -> run each chain of
prune > recover > lowrank > trim_vocab > int8/nf4/cpu_int8/bf16/openvino/openvino_int8 (shared prefixes run once; every stage saved, reloaded, measured)
-> compression_report.{md,json,png} in output_dir and the table printed.
"""

import copy
import hashlib
import json
import os

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, set_seed

from hfkit.compress.cpu_int8 import CpuInt8Arguments
from hfkit.compress.lowrank import LowRankArguments
from hfkit.compress.openvino import OpenVinoArguments
from hfkit.compress.pipeline import (
    AUTO_CPU,
    CompressArguments,
    auto_cpu_chains,
    cpu_recommendation_markdown,
    expand_chains,
    format_report,
    load_classifier_folder,
    measure_variant,
    parse_chain,
    report_rows,
    run_chains,
    settings_dict,
    time_all,
    write_report,
)
from hfkit.compress.prune import PruneArguments
from hfkit.compress.quantize import QuantizeArguments
from hfkit.compress.trim_vocab import TrimVocabArguments
from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
from hfkit.logs import setup_logging
from hfkit.modeling import check_model_labels, resolve_model_path
from hfkit.parsing import parse_args
from hfkit.reports import validation_source
from hfkit.teacher_cache import TEACHER_LOGITS_COLUMN, TeacherText, add_teacher_logits, add_teacher_outputs
from hfkit.trainers.base_config import native_bf16
from hfkit.trainers.classifier_trainer import ClassifierTrainer
from hfkit.trainers.distill_config import DistillConfig
from hfkit.trainers.distill_trainer import DistillTrainer

ARG_TYPES = (
    CompressArguments,
    DataArguments,
    PruneArguments,
    LowRankArguments,
    QuantizeArguments,
    TrimVocabArguments,
    CpuInt8Arguments,
    OpenVinoArguments,
    DistillConfig,
)


def _vocab_key(tokenizer) -> str:
    """A fingerprint of a tokenizer's vocabulary: equal for the student's and a stage that kept its tokens."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()


def main(argv: list[str] | None = None) -> list[dict]:
    os.environ.setdefault(
        "TOKENIZERS_PARALLELISM", "false"
    )  # tokenizers' threads fight the model's for cores
    args, data_args, prune_args, lowrank_args, quant_args, trim_args, cpu_int8_args, openvino_args, config = (
        parse_args(ARG_TYPES, argv)
    )
    setup_logging(config)
    # 'auto-cpu': every CPU runtime this machine can run well, and a recommendation among them at the end.
    auto_cpu = AUTO_CPU in args.chains
    args.chains = expand_chains(args.chains, native_bf16(on_cpu=True))
    set_seed(config.seed)
    raw, labels = load_classification_data(data_args)
    text, pair, max_length = data_args.text_column, data_args.text_pair_column, data_args.max_length

    student_path = resolve_model_path(args.model_name_or_path)
    args.model_name_or_path = student_path
    student, tokenizer = load_classifier_folder(student_path)
    check_model_labels(
        student, labels, args.model_name_or_path,
        "compress a model trained on this data, or set class_names to match its labels.",
    )  # fmt: skip

    def corpus(split: str) -> list[str]:
        """The split's texts (a pair's two texts as separate strings) for vocabulary trimming."""
        columns = [c for c in (text, pair) if c]
        return [t for c in columns for t in raw[split][c] if t]

    def train_rows() -> list:
        """The training rows (a text, or a pair's two texts) that openvino_int8 calibrates on: never validation."""
        if pair:
            return list(zip(raw["train"][text], raw["train"][pair]))
        return list(raw["train"][text])

    def measure(name, chain, model, folder, parameters=None, model_tokenizer=tokenizer):
        return measure_variant(
            name,
            chain,
            model,
            model_tokenizer,
            folder,
            raw["validation"],
            text,
            pair,
            max_length,
            args,
            parameters,
        )

    results = []
    teacher = teacher_tokenizer = None
    if args.teacher_name_or_path:
        teacher_path = resolve_model_path(args.teacher_name_or_path)
        teacher, teacher_tokenizer = load_classifier_folder(teacher_path)
        results.append(measure("teacher", "", teacher, teacher_path, model_tokenizer=teacher_tokenizer))
    student_row = measure("student", "", student, student_path)
    results.append(student_row)
    del student

    needs_training = any(s.name == "recover" for c in args.chains for s in parse_chain(c))
    needs_calibration = prune_args.importance == "taylor" or any(
        s.overrides.get("importance") == "taylor" for c in args.chains for s in parse_chain(c)
    )
    train = validation = logits = None
    if needs_training or needs_calibration:
        train = tokenize_dataset(raw["train"], tokenizer, text, pair, max_length)
        validation = tokenize_dataset(raw["validation"], tokenizer, text, pair, max_length)
    if needs_training and teacher is not None and config.alpha > 0:
        # Recovery distils from the teacher: its logits over the training set, computed once (and cached).
        # A teacher of another vocabulary (MPNet teaching a MiniLM student) reads the text with its own tokenizer.
        train = add_teacher_outputs(
            train, [(teacher, teacher_tokenizer)], config, tokenizer, batch_size=config.per_device_eval_batch_size,
            text=TeacherText(raw["train"], text, pair, max_length),
        )  # fmt: skip
        logits = np.asarray(train[TEACHER_LOGITS_COLUMN], dtype=np.float32)
    # The data tokenized per vocabulary: a stage after trim_vocab trains on text split with the kept tokens.
    tokenized = {_vocab_key(tokenizer): (train, validation)} if train is not None else {}

    def recover(model, folder, stage_tokenizer):
        """Fine-tune (or distil back) a compressed model with the shared training arguments."""
        key = _vocab_key(stage_tokenizer)
        if key not in tokenized:
            stage_train = tokenize_dataset(raw["train"], stage_tokenizer, text, pair, max_length)
            if logits is not None:  # the teacher's logits belong to the rows, whatever the student's tokens
                stage_train = add_teacher_logits(stage_train, logits)
            tokenized[key] = (
                stage_train,
                tokenize_dataset(raw["validation"], stage_tokenizer, text, pair, max_length),
            )
        stage_train, stage_validation = tokenized[key]
        stage_config = copy.copy(config)
        stage_config.output_dir = folder
        trainer_class = (
            DistillTrainer if TEACHER_LOGITS_COLUMN in stage_train.column_names else ClassifierTrainer
        )
        trainer = trainer_class(
            model=model,
            args=stage_config,
            train_dataset=stage_train,
            eval_dataset=stage_validation,
            processing_class=stage_tokenizer,
        )
        trainer.train()
        return trainer.model

    def calibration() -> list[dict[str, torch.Tensor]]:
        """A few training batches for Taylor importance scores."""
        columns = [
            c for c in train.column_names if c in ("input_ids", "attention_mask", "token_type_ids", "labels")
        ]
        loader = DataLoader(
            Dataset.from_dict(train.select_columns(columns)[: 64 * args.calibration_batches]),
            batch_size=config.per_device_train_batch_size,
            collate_fn=DataCollatorWithPadding(tokenizer),
        )
        return [dict(b) for _, b in zip(range(args.calibration_batches), loader)]

    results += run_chains(
        args, tokenizer, config.output_dir, measure, prune_args, lowrank_args, quant_args,
        recover=recover if needs_training else None, calibration=calibration if needs_calibration else None,
        root_parameters=student_row.parameters, trim_args=trim_args, corpus=corpus, cpu_int8_args=cpu_int8_args,
        openvino_args=openvino_args, train_rows=train_rows,
    )  # fmt: skip

    # Timed last and together (round-robin), so every model sees the same machine, busy or not.
    time_all(results, raw["validation"][text][: args.latency_batch_size], args, max_length or 128)
    rows = report_rows(results)
    settings = settings_dict(
        args, prune_args, lowrank_args, quant_args, trim_args, cpu_int8_args, openvino_args
    )
    paths = write_report(
        rows, config.output_dir, settings, len(raw["validation"]), student_path,
        validation_source(data_args),
    )  # fmt: skip
    print(f"\nCompression report: {student_path} on {len(raw['validation']):,} validation examples "
          f"(median ms per batch of {args.latency_batch_size}, every model timed round-robin):")  # fmt: skip
    print(format_report(rows))
    if auto_cpu:
        recommendation = cpu_recommendation_markdown(
            rows,
            auto_cpu_chains(native_bf16(on_cpu=True)),
            args.auto_cpu_max_loss_points,
            args.latency_batch_size,
        )
        paths["cpu_recommendation"] = os.path.join(config.output_dir, "cpu_recommendation.md")
        with open(paths["cpu_recommendation"], "w", encoding="utf-8") as f:
            f.write(recommendation)
        print("\n" + recommendation)
    print(f"\nwritten: {', '.join(paths.values())}")
    return rows
