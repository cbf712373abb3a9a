"""Compare saved classifiers on the same validation rows: accuracy, F1 and McNemar's paired test.

    hfkit compare --config compare/sst2_students [--models A B ...]

Each model reads the text with its own tokenizer, so students of different tokenizers compare fairly;
every folder hfkit writes loads (dense, low-rank, bitsandbytes). Every model after the first is tested
against the first (the baseline): how many rows only one of the two gets right, and the exact two-sided
p-value that they are equally accurate. With 6,735 rows one point of accuracy is 67 rows; this says
whether a 0.2-point gap is a real difference or the luck of these rows (it cannot say anything about
seed-to-seed variation: train more seeds for that).

Several seeds per recipe: ``--groups`` names the recipe of each model (``--models ce_s1 ce_s2 ce_s3 kd_s1 kd_s2
kd_s3 --groups ce ce ce kd kd kd``); models of one group are paired with the first group's by position (seed
i with seed i). Each group after the first then gets the tests that respect that design
(`hfkit.metrics.paired_comparison`): McNemar per seed, a paired t-test over the seeds' accuracies and a
paired bootstrap over rows of the seed-averaged correctness, never one McNemar over rows pooled across seeds.
"""

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
from hfkit.evaluation import predict_logits
from hfkit.io import load_model
from hfkit.metrics import classification_metrics, mcnemar, paired_comparison
from hfkit.modeling import check_model_labels, resolve_model_path
from hfkit.parsing import parse_args
from hfkit.reports import Report, Table, describe_data, percent, report_stem, validation_source


def compare_report(
    rows: Sequence[Mapping[str, Any]],
    data: str | None,
    num_examples: int,
    groups: Sequence[Mapping[str, Any]] = (),
) -> Report:
    """Saved classifiers on the same rows: accuracy, macro F1 and McNemar's test of each against the first (or,
    with groups, against the first group's model of the same seed); then each group's mean over its seeds and
    the paired tests of `hfkit.metrics.paired_comparison` against the first group."""
    baseline = rows[0]["name"] if not groups else f"group {groups[0]['group']}"
    table = Table(
        [
            "model",
            "accuracy",
            "macro F1",
            f"only {rows[0]['name'] if not groups else 'same seed of the baseline'} right",
            "only this right",
            "p (McNemar)",
        ],
        [
            [
                r["name"],
                percent(r["accuracy"]),
                percent(r["f1"]),
                r.get("baseline_only", "-"),
                r.get("model_only", "-"),
                f"{r['p_value']:.2g}" if "p_value" in r else "-",
            ]
            for r in rows
        ],
    )
    tables = [table]
    if groups:
        group_rows = []
        for g in groups:
            accuracies = 100 * np.asarray(g["accuracies"], dtype=float)
            std = f"{accuracies.std(ddof=1):.2f}" if len(accuracies) > 1 else "-"
            cells = [g["group"], len(accuracies), f"{accuracies.mean():.2f}", std, "-", "-", "-", "-"]
            if "tests" in g:
                t = g["tests"]
                boot, t_p = t["bootstrap"], t["t_test"]["p_value"]
                cells[4:] = [
                    f"{100 * t['difference']:+.2f}",
                    "; ".join(f"{m['b_only']}/{m['a_only']} p {m['p_value']:.2g}" for m in t["mcnemar"]),
                    "-" if math.isnan(t_p) else f"{t_p:.2g}",
                    f"[{100 * boot['ci_low']:+.2f}, {100 * boot['ci_high']:+.2f}] p {boot['p_value']:.2g}",
                ]
            group_rows.append(cells)
        tables.append(
            Table(
                [
                    "group",
                    "seeds",
                    "mean accuracy (%)",
                    "std",
                    "vs first group (points)",
                    "McNemar per seed",
                    "paired t p",
                    "bootstrap 95% CI, p",
                ],
                group_rows,
                caption="Groups (seeds paired by position): McNemar per seed (rows only this group's model / only "
                "the baseline's gets right, exact p), paired t over the seeds' accuracies, paired bootstrap over "
                "rows of the seed-averaged correctness.",
            )  # fmt: skip
        )
    return Report(
        name="compare_report",
        title=f"Comparison on {describe_data(data, num_examples)}; baseline: {baseline}",
        tables=tables,
        data={
            "data": data,
            "validation_rows": num_examples,
            "models": [dict(r) for r in rows],
            **({"groups": [dict(g) for g in groups]} if groups else {}),
        },
    )


@dataclass
class CompareArguments:
    models: list[str] = field(
        default_factory=list,
        metadata={"help": "Fine-tuned classifier folders (or wheel:<module>); the first is the baseline."},
    )
    names: list[str] | None = field(
        default=None, metadata={"help": "A short name per model for the table (default: folder names)."}
    )
    groups: list[str] | None = field(
        default=None,
        metadata={
            "help": "The recipe each model belongs to (one name per model; the same number of models, i.e. "
            "seeds, per group, paired by position). The first group is the baseline."
        },
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
        if self.groups is not None:
            sizes = {g: self.groups.count(g) for g in dict.fromkeys(self.groups)}
            if len(self.groups) != len(self.models) or len(sizes) < 2 or len(set(sizes.values())) != 1:
                raise ValueError(
                    f"groups {self.groups} for {len(self.models)} models: give one group name per model, at "
                    f"least two groups, and as many models (seeds) in each group (got {sizes})."
                )

    def partner(self, index: int) -> int:
        """The model a model is tested against: the first model, or with groups the first group's model at
        the same position (the same seed)."""
        if self.groups is None:
            return 0
        position = self.groups[: index + 1].count(self.groups[index]) - 1
        return [i for i, g in enumerate(self.groups) if g == self.groups[0]][position]


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
        partner = args.partner(len(rows))
        if partner != len(rows):
            test = mcnemar(predictions[partner], predictions[-1], gold)
            row.update(baseline_only=test["a_only"], model_only=test["b_only"], p_value=test["p_value"])
        rows.append(row)

    groups = []
    for group in dict.fromkeys(args.groups or []):
        members = [i for i, g in enumerate(args.groups) if g == group]
        accuracies = [rows[i]["accuracy"] for i in members]
        summary = {"group": group, "models": [names[i] for i in members], "accuracies": accuracies}
        if groups:  # every group after the first, against the first
            baseline = [args.partner(i) for i in members]
            summary["tests"] = paired_comparison(
                [predictions[i] for i in baseline], [predictions[i] for i in members], gold
            )
        groups.append(summary)
    report = compare_report(rows, validation_source(data_args), len(validation), groups)
    print("\n" + report.text())
    if args.output_file:  # the JSON there, and its Markdown copy next to it
        report.name = report_stem(args.output_file)
        report.save(os.path.dirname(os.path.abspath(args.output_file)))
    return rows
