"""Compare saved classifiers on the same validation rows: accuracy, F1 and McNemar's paired test.

    hfkit compare --config compare/sst2_students [--models A B ...]

Each model reads the text with its own tokenizer, so students of different tokenizers compare fairly;
every folder hfkit writes loads (dense, low-rank, bitsandbytes). Every model after the first is tested
against the first (the baseline): how many rows only one of the two gets right, and the exact two-sided
p-value that they are equally accurate. With 6,735 rows one point of accuracy is 67 rows; this says
whether a 0.2-point gap is a real difference or the luck of these rows (it cannot say anything about
seed-to-seed variation: train more seeds for that).
"""

import os
from dataclasses import dataclass, field

import numpy as np

from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
from hfkit.io import load_model
from hfkit.metrics import classification_metrics, mcnemar
from hfkit.modeling import check_model_labels, resolve_model_path
from hfkit.parsing import parse_args
from hfkit.reports import compare_report, predict_logits, report_stem, validation_source


@dataclass
class CompareArguments:
    models: list[str] = field(
        default_factory=list,
        metadata={"help": "Fine-tuned classifier folders (or wheel:<module>); the first is the baseline."},
    )
    names: list[str] | None = field(
        default=None, metadata={"help": "A short name per model for the table (default: folder names)."}
    )
    batch_size: int = field(default=128, metadata={"help": "Rows per forward pass."})
    output_file: str | None = field(
        default=None,
        metadata={"help": "Also write the comparison as JSON here (and as Markdown, same name with .md)."},
    )

    def __post_init__(self):
        if len(self.models) < 2:
            raise ValueError(f"compare needs at least two models (--models A B ...), got {self.models}.")
        if self.names is not None and len(self.names) != len(self.models):
            raise ValueError(
                f"{len(self.names)} names for {len(self.models)} models: give one name per model."
            )


ARG_TYPES = (CompareArguments, DataArguments)


def main(argv: list[str] | None = None) -> list[dict]:
    args, data_args = parse_args(ARG_TYPES, argv)
    raw, labels = load_classification_data(data_args)
    validation = raw["validation"]
    gold = np.asarray(validation["labels"])
    names = args.names or [os.path.basename(os.path.normpath(m)) for m in args.models]

    predictions, rows = [], []
    for name, model_path in zip(names, args.models, strict=True):
        model, tokenizer = load_model(resolve_model_path(model_path), task="text-classification")
        check_model_labels(
            model, labels, model_path, "compare models fine-tuned on this data (same class_names)."
        )
        data = tokenize_dataset(
            validation, tokenizer, data_args.text_column, data_args.text_pair_column, data_args.max_length
        )
        logits = predict_logits(model.eval(), tokenizer, data, args.batch_size)
        metrics = classification_metrics(logits, gold)
        predictions.append(logits.argmax(-1))
        row = {"name": name, "path": model_path, "accuracy": metrics["accuracy"], "f1": metrics["f1_macro"]}
        if len(predictions) > 1:
            test = mcnemar(predictions[0], predictions[-1], gold)
            row.update(baseline_only=test["a_only"], model_only=test["b_only"], p_value=test["p_value"])
        rows.append(row)

    report = compare_report(rows, validation_source(data_args), len(validation))
    print("\n" + report.text())
    if args.output_file:  # the JSON there, and its Markdown copy next to it
        report.name = report_stem(args.output_file)
        report.save(os.path.dirname(os.path.abspath(args.output_file)))
    return rows
