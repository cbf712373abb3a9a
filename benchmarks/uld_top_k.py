"""ULD across tokenizers: the exact loss (a full sort per position) vs `uld_top_k`, time and what it changes.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/uld_top_k.py --student models/smollm2-135m \
        --teacher models/qwen2.5-0.5b --ks 256 1024 4096

The student (SmolLM2, 49,152 tokens) and the teacher (Qwen2.5, 151,936 tokens) read the same held-out Tiny
Shakespeare text (the last 10% of the file, as in benchmarks/assisted_decoding.py), `--rows` rows of about
`--tokens` student tokens, each in its own tokenizer; every position is learned. Their logits are computed once;
then each round times `hfkit.losses.uld_loss` + backward on the student logits for the exact loss and for every
k, in turn (round-robin), and the table gives the median seconds, the speed-up, the loss and its relative error,
the cosine between the gradient and the exact loss's, and the mean tail masses the top-k form leaves out. For
scale, the teacher's forward and the student's forward + backward on the same rows are timed once: what the rest
of a training step costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from assisted_decoding import cpu_flags, held_out_text  # noqa: E402

from hfkit.losses import uld_loss  # noqa: E402
from hfkit.modeling import load_causal_lm, load_causal_lm_tokenizer  # noqa: E402


def rows_of_text(held: str, tokenizer, rows: int, tokens: int) -> list[str]:
    """`rows` consecutive pieces of the held-out text, each decoded from `tokens` of the student's tokens."""
    ids = tokenizer(held)["input_ids"]
    return [tokenizer.decode(ids[i * tokens : (i + 1) * tokens]) for i in range(rows)]


def logits_of(
    model, tokenizer, texts: list[str], grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(next-token logits [rows, L-1, V], mask of real positions, seconds of the forward (+ backward))."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    start = time.perf_counter()
    with torch.set_grad_enabled(grad):
        logits = model(**batch, use_cache=False).logits[:, :-1]
        if grad:
            logits.float().logsumexp(-1).mean().backward()  # a backward of the same size as a loss's
    seconds = time.perf_counter() - start
    return logits.detach(), batch["attention_mask"][:, 1:].bool(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument(
        "--data", default=os.path.join(REPO, "..", "shared", "data", "tinyshakespeare", "input.txt")
    )
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128, help="student tokens per row")
    parser.add_argument("--ks", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    student_tokenizer = load_causal_lm_tokenizer(args.student)
    teacher_tokenizer = load_causal_lm_tokenizer(args.teacher)
    texts = rows_of_text(held_out_text(args.data), student_tokenizer, args.rows, args.tokens)
    teacher = load_causal_lm(args.teacher, dtype=torch.float32).eval()
    teacher_logits, teacher_mask, teacher_s = logits_of(teacher, teacher_tokenizer, texts)
    del teacher
    student = load_causal_lm(args.student, dtype=torch.float32).train()
    student_logits, student_mask, student_s = logits_of(student, student_tokenizer, texts, grad=True)
    del student

    variants: list[int | None] = [None, *args.ks]
    seconds: dict[int | None, list[float]] = {k: [] for k in variants}
    losses, grads = {}, {}
    for _ in range(args.rounds):
        for k in variants:
            leaf = student_logits.clone().requires_grad_(True)
            start = time.perf_counter()
            loss = uld_loss(leaf, teacher_logits, student_mask, teacher_mask, top_k=k)
            loss.backward()
            seconds[k].append(time.perf_counter() - start)
            losses[k], grads[k] = loss.item(), leaf.grad.flatten()

    pairs = min(int(student_mask.sum()), int(teacher_mask.sum()))
    print(
        f"# ULD loss, exact vs top-k, on {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"command: python benchmarks/uld_top_k.py {' '.join(sys.argv[1:])}\n")
    print(f"{args.rows} rows; {int(student_mask.sum())} student / {int(teacher_mask.sum())} teacher positions "
          f"({pairs} pairs at most); vocabularies {student_logits.shape[-1]:,} / {teacher_logits.shape[-1]:,}; "
          f"{args.rounds} rounds")  # fmt: skip
    print(f"rest of a step on these rows: teacher forward {teacher_s:.1f} s, student forward + backward "
          f"{student_s:.1f} s\n")  # fmt: skip
    print("| uld_top_k | loss + backward s | speed-up | loss | relative error | gradient cosine | tail mass "
          "student / teacher |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(seconds[None])
    for k in variants:
        s = statistics.median(seconds[k])
        cosine = torch.nn.functional.cosine_similarity(grads[k].double(), grads[None].double(), dim=0).item()
        error = (losses[k] - losses[None]) / losses[None]
        if k is None:
            tails = "-"
        else:
            masses = []
            for logits, mask in ((student_logits, student_mask), (teacher_logits, teacher_mask)):
                probs = torch.softmax(logits[mask].float(), -1)
                masses.append((1 - probs.topk(min(k, probs.shape[-1]), -1).values.sum(-1)).mean().item())
            tails = f"{masses[0]:.4f} / {masses[1]:.4f}"
        print(f"| {k if k is not None else 'None (exact)'} | {s:.2f} | {base / s:.1f}x | {losses[k]:.4f} | "
              f"{error:+.2%} | {cosine:.4f} | {tails} |")  # fmt: skip


if __name__ == "__main__":
    main()
