"""An instruction LLM as the teacher of a 3-layer SST-2 student, without gold labels, against gold labels.

    python benchmarks/llm_teacher_study.py --runs outputs/llm_study [--seeds 42 43 44] [--lanes 1]
    python benchmarks/llm_teacher_study.py --runs outputs/llm_study --report_only

1. `hfkit label --config label/qwen25_sst2` (once, into <runs>/label_qwen): Qwen2.5-Coder-0.5B-Instruct reads a
   seeded sample of 2,000 training rows of `sentence_split/train.tsv` zero-shot; its label-word log-probs are
   those rows' teacher logits. It also scores the 1,000 validation sentences: the LLM's own zero-shot accuracy.
2. Per seed, the same 3-layer student (layers 0, 2, 4 of MiniLM-L6) on the same 2,000 rows, same steps:
   - `gold_2k`: cross-entropy on the gold labels (classify/minilm_l3_sst2_2k.yaml), the baseline;
   - `llm_hard_2k`: cross-entropy on the LLM's choices (no gold label read);
   - `llm_kd_2k`: distilled from the LLM's logits (distill/minilm_l3_sst2_llm_labels.yaml, T 2, alpha 0.5).
Every student is scored on `sentence_split/validation.tsv` (its last epoch: nothing is chosen on validation;
the prompt was, see label/qwen25_sst2.yaml), with the paired tests of `studies.paired_tests` against
`gold_2k` (McNemar per seed, paired t over seeds, paired bootstrap over rows of seed-averaged correctness).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from sst2_study import predictions
from studies import (
    PAIRED_TESTS_NOTE,
    REPO,
    Cell,
    Predictions,
    check_settings,
    commands_list,
    done,
    mean_std,
    paired_tests,
    paired_text,
    run_all,
    run_dir,
)

LABELS = "{runs}/label_qwen"
BASELINE = "gold_2k"


def cells() -> list[Cell]:
    llm_rows = ["--train_file", LABELS + "/train.jsonl"]
    return [
        Cell(BASELINE, "3-layer student, CE on 2,000 gold rows, 3 epochs", "classify",
             "classify/minilm_l3_sst2_2k.yaml", []),
        Cell("llm_hard_2k", "the same, CE on the LLM's choices for those rows (no gold)", "classify",
             "classify/minilm_l3_sst2_2k.yaml", llm_rows),
        Cell("llm_kd_2k", "the same, KD from the LLM's logits (T 2, alpha 0.5; no gold)", "distill",
             "distill/minilm_l3_sst2_llm_labels.yaml", llm_rows),
    ]  # fmt: skip


def label(runs: str, threads: int) -> str:
    """Run `hfkit label` once into <runs>/label_qwen (a finished one is reused); its folder."""
    out = LABELS.format(runs=runs)
    if os.path.isfile(os.path.join(out, "label_report.json")):
        return out
    cmd = [sys.executable, os.path.join(REPO, "recipes", "label.py"), "--config",
           os.path.join(REPO, "recipes", "configs", "label", "qwen25_sst2.yaml"), "--output_dir", out,
           "--overwrite_output_dir", "true"]  # fmt: skip
    print("labelling:", " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    return out


def report(runs: str, chosen: list[Cell], seeds: list[int]) -> str:
    """Markdown: the LLM's zero-shot accuracy, then each cell's mean and the paired tests against gold_2k."""
    with open(os.path.join(LABELS.format(runs=runs), "label_report.json")) as f:
        labelled = json.load(f)
    splits = labelled["splits"]
    lines = [
        f"LLM: {labelled['model']}, zero-shot, label words {labelled['label_words']}: "
        f"{100 * splits['validation']['accuracy']:.2f}% on {splits['validation']['rows']:,} validation sentences "
        f"(prompt picked on rows 0-199 of them), {100 * splits['train']['accuracy']:.2f}% agreement with the gold "
        f"labels of the {splits['train']['rows']:,} training rows it labelled "
        f"({splits['train']['rows'] / labelled['train_seconds']:.2f} rows/s).",
        "",
        "| cell | what | seeds | accuracy per seed | mean +- sd | vs gold_2k (points) | McNemar per seed "
        "(only this / only gold, p) | paired t p | bootstrap 95% CI, p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    results: dict[str, Predictions] = {}
    for cell in chosen:
        results[cell.name] = {
            s: predictions(run_dir(runs, cell, s)) for s in seeds if done(run_dir(runs, cell, s))
        }
    for cell in chosen:
        got = results[cell.name]
        if not got:
            continue
        accuracies = [100 * float((p == g).mean()) for p, g in got.values()]
        mean, sd = mean_std(accuracies)
        tests = paired_tests(got, results[BASELINE]) if cell.name != BASELINE else None
        diff, mcnemar_text, t_p, boot = paired_text(tests)
        lines.append(
            f"| {cell.name} | {cell.what} | {len(got)} | {', '.join(f'{a:.2f}' for a in accuracies)} | "
            f"{mean:.2f} +- {sd:.2f} | {diff} | {mcnemar_text} | {t_p} | {boot} |"
        )
    return "\n".join([*lines, "", PAIRED_TESTS_NOTE, "", *commands_list(chosen)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads per run (default: cores / lanes)"
    )
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args()
    chosen = cells()
    if not args.report_only:
        label(args.runs, args.threads or max(1, (os.cpu_count() or 2) // args.lanes))
        check_settings(args.runs, chosen, args.seeds)
        run_all(args.runs, chosen, chosen, args.seeds, args.lanes, args.threads)
    print(report(args.runs, chosen, args.seeds))


if __name__ == "__main__":
    main()
