"""Fine-tune a sequence classifier, in full or with LoRA / QLoRA adapters (use_lora: true).

    hfkit classify --config classify/minilm_sst2 [--key value ...]

Order as in transformers' run_glue.py: args -> seed -> data -> model -> tokenize -> train -> save.
With LoRA the saved model is the merged plain classifier (unless merge_on_save: false), so evaluation and
AutoModelForSequenceClassification.from_pretrained work on output_dir exactly as after full fine-tuning.
"""

import os

import torch

from hfkit.compress.lora import (
    LoraArguments,
    apply_lora,
    load_quantized_classifier,
    merge_adapter_into_base,
    merge_and_unload_to,
)
from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
from hfkit.errors import UserInputError
from hfkit.logs import logger, quiet_progress
from hfkit.modeling import ModelArguments, load_classifier, load_tokenizer
from hfkit.parsing import parse_args
from hfkit.reports import validation_source
from hfkit.runtime import RunArguments, begin_run, end_run
from hfkit.student import student_from_teacher
from hfkit.trainers.classifier_config import ClassifierConfig
from hfkit.trainers.classifier_trainer import ClassifierTrainer

ARG_TYPES = (ModelArguments, DataArguments, LoraArguments, ClassifierConfig, RunArguments)


def save_lora_model(
    trainer: ClassifierTrainer,
    tokenizer,
    model_args: ModelArguments,
    lora_args: LoraArguments,
    labels: list[str],
) -> None:
    """Save the final LoRA model to output_dir: merged into a plain classifier, or the adapter only."""
    out = trainer.args.output_dir
    if not lora_args.merge_on_save:
        trainer.save_model()  # adapter_config.json + adapter weights (+ the trained head)
        return
    if lora_args.qlora_bits is None:
        merged = merge_and_unload_to(trainer.model, tokenizer, out, trainer.is_world_process_zero())
    else:
        # A quantized base cannot take the merge: keep the adapter, merge it into the float base.
        adapter = os.path.join(out, "adapter")
        trainer.save_model(adapter)
        if not trainer.is_world_process_zero():
            return
        merged = merge_adapter_into_base(
            model_args.model_name_or_path, adapter, out,
            num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True,
            revision=model_args.revision, trust_remote_code=model_args.trust_remote_code,
        )  # fmt: skip
    trainer.model = merged  # the returned trainer holds the model saved in output_dir, not the adapter


def main(argv: list[str] | None = None) -> ClassifierTrainer:
    parsed = parse_args(ARG_TYPES, argv)
    model_args, data_args, lora_args, config, _run_args = parsed
    if config.push_to_hub and lora_args.use_lora and not lora_args.merge_on_save:
        raise UserInputError(
            "push_to_hub uploads a model that loads on its own, and merge_on_save: false saves the LoRA adapter "
            "only: set merge_on_save: true, or set push_to_hub: false and upload the adapter yourself."
        )
    run = begin_run(parsed)  # logging, resume / finished / refused (output_dir/run.json), seed
    if run is None:  # output_dir holds this run, finished
        return None

    # The main process reads and tokenizes first; the others then load the cached result.
    with config.main_process_first(desc="loading data"):
        raw, labels = load_classification_data(data_args)
        logger.info(
            "data: %s training rows, %s validation rows, labels %s",
            f"{len(raw['train']):,}",
            f"{len(raw['validation']):,}",
            labels,
        )
        tokenizer = load_tokenizer(model_args)
        data = tokenize_dataset(
            raw, tokenizer, data_args.text_column, data_args.text_pair_column, data_args.max_length
        )
    if lora_args.qlora_bits is not None:
        compute_dtype = torch.bfloat16 if config.bf16 else torch.float16 if config.fp16 else torch.float32
        model = load_quantized_classifier(model_args, labels, lora_args, compute_dtype)
    else:
        model = load_classifier(model_args, labels)
    if model_args.keep_layers is not None:
        model = student_from_teacher(model, model_args.keep_layers)
    if lora_args.use_lora:
        model = apply_lora(model, lora_args, "SEQ_CLS", gradient_checkpointing=config.gradient_checkpointing)

    trainer = ClassifierTrainer(
        model=model,
        args=config,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        eval_data_name=validation_source(data_args),
    )
    quiet_progress(trainer)
    logger.info(
        "training %s on %s rows -> %s",
        model_args.model_name_or_path,
        f"{len(data['train']):,}",
        config.output_dir,
    )
    trainer.train(resume_from_checkpoint=run.resume_from)
    if lora_args.use_lora:
        save_lora_model(trainer, tokenizer, model_args, lora_args, labels)
    else:
        trainer.save_model()  # the best (or last) model, with its tokenizer, in output_dir
    trainer.save_state()
    end_run(parsed, run)
    return trainer
