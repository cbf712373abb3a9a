"""Assisted (speculative) decoding with a distilled student as the draft vs plain greedy `generate`, on a CPU.

    python benchmarks/assisted_decoding.py --model outputs/clm/smollm2_shakespeare \
        --assistant outputs/clm_study/off_policy [--prompts 8] [--max_new_tokens 64] [--rounds 3]

Prompts: the first 32 tokens of held-out Tiny Shakespeare windows (the last 10% of the file, which the clm
configs hold out). Each round times every prompt plain and assisted, alternating (round-robin, batch 1, greedy,
the same `hfkit.generation.generate_details` path as `hfkit generate --assistant_model`); the table gives
tokens/s (medians over rounds of the summed tokens / summed seconds), the ratio, and whether the assisted tokens
equal the plain ones for every prompt (they must: assisted greedy decoding only changes how fast).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hfkit.generation import GenerateArguments, generate_details  # noqa: E402
from hfkit.modeling import load_causal_lm, load_causal_lm_tokenizer  # noqa: E402


def cpu_flags() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    model = next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), ""
    )
    kept = [f for f in flags if f.startswith(("avx", "amx")) or f in ("fma",)]
    return f"{model}; {' '.join(kept)}"


def held_out_prompts(path: str, tokenizer, n: int, tokens: int = 32) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    held = text[int(0.9 * len(text)) :]
    ids = tokenizer(held, add_special_tokens=False)["input_ids"]
    step = max(tokens, len(ids) // n)
    return [tokenizer.decode(ids[i * step : i * step + tokens]) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--assistant", required=True)
    parser.add_argument(
        "--data", default=os.path.join(REPO, "..", "shared", "data", "tinyshakespeare", "input.txt")
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    model, tokenizer = load_causal_lm(args.model), load_causal_lm_tokenizer(args.model)
    draft, draft_tokenizer = load_causal_lm(args.assistant), load_causal_lm_tokenizer(args.assistant)
    prompts = held_out_prompts(args.data, tokenizer, args.prompts)
    gen = GenerateArguments(
        model_name_or_path=args.model, prompt=prompts, chat_template=False, max_new_tokens=args.max_new_tokens,
        batch_size=1,
    )  # fmt: skip
    rates = {"plain": [], "assisted": []}
    same = True
    generate_details(model, tokenizer, prompts[:1], gen)  # warm-up
    for _ in range(args.rounds):
        plain_tokens = plain_seconds = assisted_tokens = assisted_seconds = 0
        for prompt in prompts:  # round-robin: plain then assisted, prompt by prompt
            (p,) = generate_details(model, tokenizer, [prompt], gen)
            (a,) = generate_details(model, tokenizer, [prompt], gen, draft, draft_tokenizer)
            same &= p.token_ids == a.token_ids
            plain_tokens, plain_seconds = plain_tokens + len(p.token_ids), plain_seconds + p.seconds
            assisted_tokens, assisted_seconds = (
                assisted_tokens + len(a.token_ids),
                assisted_seconds + a.seconds,
            )
        rates["plain"].append(plain_tokens / plain_seconds)
        rates["assisted"].append(assisted_tokens / assisted_seconds)
    plain, assisted = statistics.median(rates["plain"]), statistics.median(rates["assisted"])
    params = {
        name: sum(p.numel() for p in m.parameters()) for name, m in (("model", model), ("draft", draft))
    }
    print(f"# Assisted decoding on {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"command: python benchmarks/assisted_decoding.py {' '.join(sys.argv[1:])}\n")
    print(
        "| model | draft | prompts x new tokens | plain tokens/s | assisted tokens/s | ratio | same greedy tokens |"
    )
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.model} ({params['model'] / 1e6:.0f}M) | {args.assistant} ({params['draft'] / 1e6:.0f}M) | "
          f"{len(prompts)} x {args.max_new_tokens} | {plain:.1f} | {assisted:.1f} | {assisted / plain:.2f}x | "
          f"{'yes' if same else 'NO'} |")  # fmt: skip


if __name__ == "__main__":
    main()
