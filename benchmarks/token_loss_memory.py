"""Peak memory of a token-level distillation loss (forward + backward), whole vs chunked, for a 150k vocabulary.

    python benchmarks/token_loss_memory.py [--positions 512] [--vocab 151936] [--chunk 128] [--rounds 3]

Each measurement runs in a fresh process (peak resident memory only grows): it builds student logits (with
grad) and teacher logits of `positions` x `vocab` float32 entries (Qwen2.5's vocabulary by default), notes the
peak RSS, computes `hfkit.losses.token_divergence` (whole, or `chunk_size=--chunk`) and its backward pass, and
reports how much the peak grew: the memory the loss itself needs beyond its inputs. Whole and chunked runs
alternate (round-robin); the loss values and gradients of the two are checked equal first.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def measure(positions: int, vocab: int, divergence: str, chunk: int | None) -> dict:
    """In this process: the peak-RSS growth (MB) and time of one loss + backward."""
    import torch

    from hfkit.losses import token_divergence

    torch.manual_seed(0)
    student = torch.randn(1, positions, vocab, requires_grad=True)
    teacher = torch.randn(1, positions, vocab)
    labels = torch.ones(1, positions, dtype=torch.long)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loss = token_divergence(student, teacher, labels, divergence, beta=0.5, chunk_size=chunk)
    loss.backward()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_growth_mb": (after - before) / 1024, "seconds": seconds, "loss": loss.item()}


def check_equal(vocab: int, divergence: str, chunk: int) -> None:
    """The chunked loss and gradient equal the whole one (small sizes)."""
    import torch

    from hfkit.losses import token_divergence

    torch.manual_seed(1)
    student = torch.randn(1, 3 * chunk + 5, 997, requires_grad=True)
    teacher = torch.randn(1, 3 * chunk + 5, 997)
    labels = torch.ones(1, 3 * chunk + 5, dtype=torch.long)
    whole = token_divergence(student, teacher, labels, divergence, beta=0.5)
    (g_whole,) = torch.autograd.grad(whole, student)
    parts = token_divergence(student, teacher, labels, divergence, beta=0.5, chunk_size=chunk)
    (g_parts,) = torch.autograd.grad(parts, student)
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_parts, g_whole, rtol=1e-4, atol=1e-7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--divergences", nargs="+", default=["forward_kl", "jsd"])
    parser.add_argument("--child", nargs=2, metavar=("DIVERGENCE", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        chunk = None if args.child[1] == "none" else int(args.child[1])
        print(json.dumps(measure(args.positions, args.vocab, args.child[0], chunk)))
        return

    tensor_mb = args.positions * args.vocab * 4 / 2**20
    print(f"# Token-loss peak memory: {args.positions} positions x {args.vocab:,} vocabulary (one float32 logits "
          f"tensor = {tensor_mb:.0f} MB), chunks of {args.chunk}")  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"command: python benchmarks/token_loss_memory.py {' '.join(sys.argv[1:])}\n")  # fmt: skip
    print("| divergence | whole: peak growth MB (x logits) | chunked: peak growth MB (x logits) | ratio | "
          "whole s | chunked s |\n|---|---|---|---|---|---|")  # fmt: skip
    for divergence in args.divergences:
        check_equal(args.vocab, divergence, 8)
        results = {"none": [], str(args.chunk): []}
        for _ in range(args.rounds):
            for chunk in results:  # round-robin: whole, chunked, whole, ...
                out = subprocess.run(
                    [sys.executable, __file__, "--positions", str(args.positions), "--vocab", str(args.vocab),
                     "--child", divergence, chunk],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                results[chunk].append(json.loads(out.stdout.strip().splitlines()[-1]))
        whole, parts = results["none"], results[str(args.chunk)]
        assert abs(whole[0]["loss"] - parts[0]["loss"]) <= 1e-4 * abs(whole[0]["loss"]), (whole[0], parts[0])
        w_mb = sorted(r["peak_growth_mb"] for r in whole)[len(whole) // 2]
        p_mb = sorted(r["peak_growth_mb"] for r in parts)[len(parts) // 2]
        w_s = sorted(r["seconds"] for r in whole)[len(whole) // 2]
        p_s = sorted(r["seconds"] for r in parts)[len(parts) // 2]
        print(f"| {divergence} | {w_mb:,.0f} ({w_mb / tensor_mb:.1f}x) | {p_mb:,.0f} ({p_mb / tensor_mb:.1f}x) | "
              f"{p_mb / w_mb:.2f} | {w_s:.2f} | {p_s:.2f} |")  # fmt: skip
    print("\nPeak growth: the largest resident memory during loss + backward minus the peak before it (inputs "
          "already allocated); medians over the rounds. The gradient of the student's logits (one logits tensor) "
          "is part of both.")  # fmt: skip


if __name__ == "__main__":
    main()
