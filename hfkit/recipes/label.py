"""Label text with an instruction LLM: its label-word log-probabilities become a cached teacher for `hfkit distill`.

    hfkit label --config label/qwen25_sst2 [--key value ...]
    hfkit distill --config distill/minilm_l3_sst2_llm_labels     # the student learns from those labels

The LLM reads each training text in a prompt (prompt_template with {text}, system prompt, few-shot examples,
its chat template) and the log-probability of each class's label word at the answer position is that row's
``teacher_logits`` (`hfkit.teacher_cache.llm`). Written to output_dir: ``train.jsonl`` (the text, ``label`` = the
LLM's choice under the data's label column name, ``teacher_logits``; the data's own label, if any, as
``gold_<label column>``, never used unless you choose it), and ``label_report.json/.md``: the LLM's zero-shot accuracy on the validation rows (when they are labelled),
its agreement with the training labels, and the time it took.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from hfkit.data.sources import DataSourceArguments, load_raw_datasets, split_source, subsample
from hfkit.errors import UserInputError
from hfkit.logs import logger
from hfkit.metrics import classification_metrics
from hfkit.modeling import load_causal_lm, load_causal_lm_tokenizer
from hfkit.parsing import parse_args
from hfkit.reports import Report, Table, describe_data, percent
from hfkit.teacher_cache import TEACHER_LOGITS_COLUMN
from hfkit.teacher_cache.llm import LabelPrompt, LLMLabeller


@dataclass
class LabelArguments(DataSourceArguments):
    """The LLM, the prompt, the data and where the labelled rows go."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "The instruction LLM: Hub id, local folder (or a folder with gguf_file)."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "A .gguf file inside model_name_or_path."})
    prompt_template: str = field(
        default="Review: {text}\nIs the sentiment of this review positive or negative? Answer with one word.",
        metadata={"help": "The user message; {text} marks where each row's text goes (exactly once)."},
    )
    label_words: list[str] = field(
        default_factory=lambda: ["negative", "positive"],
        metadata={
            "help": "One word per class, in class order: the LLM's answer is read at their first tokens."
        },
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "The data's class names in the order of label_words (default: the label words)."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "An optional system message."})
    answer_prefix: str = field(
        default="", metadata={"help": "Text after the prompt, before the answer (e.g. 'Sentiment:')."}
    )
    few_shot: list[dict] | None = field(
        default=None,
        metadata={
            "help": "Worked examples, each {text: ..., label: <class index or label word>}: shown before every "
            "row (take them from the training data, never from the evaluation rows)."
        },
    )
    use_chat_template: bool = field(
        default=True, metadata={"help": "Wrap the prompt in the model's chat template (when it has one)."}
    )
    calibrate: bool = field(
        default=False,
        metadata={
            "help": "Contextual calibration (Zhao et al. 2021): subtract the log-probabilities the LLM gives the "
            "label words for a content-free text ('N/A'), removing its prior for one word."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    label_column: str | None = field(
        default="label",
        metadata={
            "help": "Gold label column, if the data has one: scores the LLM; written as gold_<column>, the LLM's "
            "choice taking the column's name."
        },
    )
    max_length: int | None = field(default=256, metadata={"help": "Tokens of each text the LLM reads."})
    batch_size: int = field(default=16, metadata={"help": "Rows per forward pass."})
    output_dir: str = field(
        default="outputs/label", metadata={"help": "Where train.jsonl and the report go."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the labels already in output_dir."}
    )

    def __post_init__(self):
        if self.model_name_or_path is None:
            raise UserInputError("model_name_or_path is required: the instruction LLM that labels the text.")
        if self.class_names is not None and len(self.class_names) != len(self.label_words):
            raise UserInputError(
                f"{len(self.class_names)} class_names for {len(self.label_words)} label_words: one name per word."
            )
        self.prompt = LabelPrompt(
            self.prompt_template, list(self.label_words), self.system_prompt, self.answer_prefix,
            list(self.few_shot or []), self.use_chat_template,
        )  # fmt: skip


ARG_TYPES = (LabelArguments,)


def _gold(ds, args: LabelArguments, names: list[str]) -> np.ndarray | None:
    """The data's labels as class indices in label_words order, or None when it has none."""
    if not args.label_column or args.label_column not in ds.column_names:
        return None
    index = {name: i for i, name in enumerate(names)}
    gold = []
    for value in ds[args.label_column]:
        key = str(value)
        if key not in index:
            if isinstance(value, int) and 0 <= value < len(names):
                key = names[value]
            else:
                raise UserInputError(
                    f"label {value!r} is not one of class_names {names}: set class_names to the data's labels, "
                    "in the order of label_words."
                )
        gold.append(index[key])
    return np.asarray(gold)


def label_report(args: LabelArguments, rows: dict, seconds: float, train_rows: int) -> Report:
    """The LLM's accuracy on each labelled split, and how long labelling took."""
    table = [
        [
            split,
            describe_data(r["source"], r["rows"]),
            percent(r.get("accuracy")),
            percent(r["positive_share"]),
        ]
        for split, r in rows.items()
    ]
    return Report(
        name="label_report",
        title=f"{args.model_name_or_path} as a classifier (label words {args.label_words})",
        tables=[
            Table(
                ["split", "rows", "accuracy vs gold", f"share '{args.label_words[-1]}'"],
                table,
                "Accuracy of the LLM's choice (largest label-word log-probability) where the rows have labels.",
            )
        ],
        notes=[
            f"{train_rows:,} training rows labelled in {seconds:.0f} s ({train_rows / max(seconds, 1e-9):.1f} rows/s).",
            f"Written: {os.path.join(args.output_dir, 'train.jsonl')} with '{TEACHER_LOGITS_COLUMN}' (the cached "
            "teacher for hfkit distill) and '" + (args.label_column or "label") + "' (the LLM's choice).",
        ],
        data={
            "model": args.model_name_or_path,
            "prompt_template": args.prompt_template,
            "system_prompt": args.system_prompt,
            "label_words": args.label_words,
            "few_shot": len(args.few_shot or []),
            "calibrate": args.calibrate,
            "splits": rows,
            "train_seconds": seconds,
        },
    )


def main(argv: list[str] | None = None) -> Report:
    (args,) = parse_args(ARG_TYPES, argv)
    out = os.path.join(args.output_dir, "train.jsonl")
    if os.path.exists(out) and not args.overwrite_output_dir:
        raise UserInputError(
            f"{out} already holds labels: pass --overwrite_output_dir true to replace them, or another output_dir."
        )
    raw = load_raw_datasets(args)
    names = list(args.class_names or args.label_words)
    model = load_causal_lm(args.model_name_or_path, gguf_file=args.gguf_file)
    tokenizer = load_causal_lm_tokenizer(args.model_name_or_path, gguf_file=args.gguf_file)
    labeller = LLMLabeller(model, tokenizer, args.prompt, args.batch_size, args.max_length)
    logger.info(
        "label words %s read at tokens %s",
        args.label_words,
        tokenizer.convert_ids_to_tokens(labeller.label_ids),
    )
    offset = labeller.score(["N/A"], desc="content-free")[0] if args.calibrate else 0.0

    rows, written, seconds = {}, None, 0.0
    for split in ("validation", "train"):
        if split not in raw:
            continue
        ds = raw[split]
        if args.text_column not in ds.column_names:
            raise UserInputError(
                f"{split_source(args, split)} has no column {args.text_column!r} (columns: {ds.column_names}): "
                "set text_column."
            )
        limit = args.max_train_samples if split == "train" else args.max_eval_samples
        ds = subsample(ds, limit, args.split_seed)
        logits = labeller.score(ds[args.text_column], desc=f"LLM labels ({split})") - offset
        seconds = labeller.seconds if split == "train" else seconds
        choice = logits.argmax(-1)
        # positive_share: the share of rows the LLM gives the last class (the positive one of a binary task).
        entry = {
            "source": split_source(args, split),
            "rows": len(ds),
            "positive_share": float((choice == len(names) - 1).mean()),
        }
        gold = _gold(ds, args, names)
        if gold is not None:
            entry["accuracy"] = classification_metrics(logits, gold)["accuracy"]
        rows[split] = entry
        if split == "train":
            written = (ds, logits, choice, gold)
    if written is None:
        raise UserInputError("there is no training text to label: set train_file (or dataset_name).")

    ds, logits, choice, gold = written
    label = args.label_column or "label"  # the LLM's choice under the data's own label column name
    # ... and in the data's own form: a class name where the file names its labels, else the class index.
    named = gold is not None and isinstance(ds[0][args.label_column], str)

    def written_label(index: int):
        return names[index] if named else index

    os.makedirs(args.output_dir, exist_ok=True)
    with open(out + ".part", "w") as f:
        for i, text in enumerate(ds[args.text_column]):
            row = {
                args.text_column: text,
                label: written_label(int(choice[i])),
                TEACHER_LOGITS_COLUMN: logits[i].tolist(),
            }
            if gold is not None:
                row[f"gold_{label}"] = written_label(int(gold[i]))
            f.write(json.dumps(row) + "\n")
    os.replace(out + ".part", out)  # a finished file or none: an interrupted run leaves no half labels
    report = label_report(args, rows, seconds, len(ds))
    report.save(args.output_dir)
    print("\n" + report.text())
    return report
