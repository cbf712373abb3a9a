"""Assisted (speculative) decoding with a distilled student as the draft vs plain greedy `generate`, on a CPU.

    python benchmarks/assisted_decoding.py --model outputs/clm/smollm2_shakespeare \
        --assistant outputs/clm_study/off_policy [--prompts 8] [--max_new_tokens 64] [--rounds 3]
    python benchmarks/assisted_decoding.py --model outputs/clm/smollm2_shakespeare --assistant int8

Prompts: the first 32 tokens of held-out Tiny Shakespeare windows (the last 10% of the file, which the clm
configs hold out). Each round times every prompt plain and assisted, alternating (round-robin, batch 1, greedy,
the same `hfkit.generation.generate_details` path as `hfkit generate --assistant_model`); the table gives
tokens/s (medians over rounds of the summed tokens / summed seconds), the ratio, and whether the assisted tokens
equal the plain ones for every prompt (they must: assisted greedy decoding only changes how fast).

What decides the ratio is printed under the table: the draft's own greedy tokens/s (timed in the same rounds:
its cost per drafted token against the model's, c), and how often the draft's next token is the model's
(top-1 agreement, teacher-forced on 512 held-out tokens: the acceptance rate a, when both share a tokenizer).
With k drafted tokens per step and a verifying pass costing about one decoding step, the expected speed-up
is (1 - a^(k+1)) / ((1 - a) (k c + 1)) (Leviathan et al. 2023); it is printed for k = 1 ... 8 so a miss can be
read off: a draft needs a high a at a low c.
"""

from __future__ import annotations

import argparse
import math
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


def held_out_text(path: str) -> str:
    """The last 10% of the text file: what the clm configs hold out (prompts, perplexity and agreement read it)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text[int(0.9 * len(text)) :]


def held_out_prompts(held: str, tokenizer, n: int, tokens: int = 32) -> list[str]:
    ids = tokenizer(held, add_special_tokens=False)["input_ids"]
    step = max(tokens, len(ids) // n)
    return [tokenizer.decode(ids[i * step : i * step + tokens]) for i in range(n)]


def greedy_setup(args, tokenizer) -> tuple[str, list[str], GenerateArguments]:
    """(held-out text, its prompts, the batch-1 greedy settings) every decoding benchmark here times with, from
    the scripts' shared options (--model, --data, --prompts, --max_new_tokens)."""
    held = held_out_text(args.data)
    prompts = held_out_prompts(held, tokenizer, args.prompts)
    gen = GenerateArguments(
        model_name_or_path=args.model, prompt=prompts, chat_template=False, max_new_tokens=args.max_new_tokens,
        batch_size=1,
    )  # fmt: skip
    return held, prompts, gen


SELF_INT8 = "int8"


def int8_copy(model):
    """A copy of `model` whose nn.Linear layers (LM head included) run torch's dynamic int8 kernels (fbgemm)."""
    import copy
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with (
        warnings.catch_warnings()
    ):  # torch.ao.quantization is deprecated in favour of torchao (no eager CPU int8)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        ).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--assistant",
        required=True,
        help=f"the draft's folder, or '{SELF_INT8}': the model itself with int8 linear layers (torch dynamic "
        "quantization, per-channel weights, activations quantized per call)",
    )
    parser.add_argument(
        "--data", default=os.path.join(REPO, "..", "shared", "data", "tinyshakespeare", "input.txt")
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    model, tokenizer = load_causal_lm(args.model), load_causal_lm_tokenizer(args.model)
    if args.assistant == SELF_INT8:
        draft, draft_tokenizer = int8_copy(model), tokenizer
    else:
        draft, draft_tokenizer = load_causal_lm(args.assistant), load_causal_lm_tokenizer(args.assistant)
    held, prompts, gen = greedy_setup(args, tokenizer)
    rates = {"plain": [], "assisted": [], "draft": []}
    same = True
    generate_details(model, tokenizer, prompts[:1], gen)  # warm-up
    for _ in range(args.rounds):
        done = {k: [0, 0.0] for k in rates}  # tokens, seconds
        for prompt in prompts:  # round-robin: plain, assisted, the draft alone, prompt by prompt
            (p,) = generate_details(model, tokenizer, [prompt], gen)
            (a,) = generate_details(model, tokenizer, [prompt], gen, draft, draft_tokenizer)
            (d,) = generate_details(draft, draft_tokenizer, [prompt], gen)
            same &= p.token_ids == a.token_ids
            for key, g in (("plain", p), ("assisted", a), ("draft", d)):
                done[key][0] += len(g.token_ids)
                done[key][1] += g.seconds
        for key, (tokens, seconds) in done.items():
            rates[key].append(tokens / seconds)
    plain, assisted = statistics.median(rates["plain"]), statistics.median(rates["assisted"])
    draft_rate = statistics.median(rates["draft"])
    # With one tokenizer both models read the same held-out ids (tokenized once) for agreement and perplexity.
    shared = draft_tokenizer.get_vocab() == tokenizer.get_vocab()
    held_ids = tokenizer(held, return_tensors="pt")["input_ids"][0] if shared else None
    agreement = top1_agreement(model, draft, held_ids) if shared else None
    params = {
        name: sum(p.numel() for p in m.parameters()) for name, m in (("model", model), ("draft", draft))
    }
    if args.assistant == SELF_INT8:  # its packed int8 weights are not nn.Parameters
        params["draft"] = params["model"]
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
    cost = plain / draft_rate  # the draft's time per token as a share of the model's
    print(f"\ndraft alone: {draft_rate:.1f} tokens/s, so c = {cost:.2f} of the model's time per token")
    if agreement is None:
        print("top-1 agreement: not measured (the draft has another tokenizer)")
        return
    print(f"top-1 agreement of the draft with the model (teacher-forced, held-out text): a = {agreement:.3f}")
    print("held-out perplexity (16 blocks of 256 tokens): model "
          + ", draft ".join(f"{held_out_perplexity(m, held_ids):.2f}" for m in (model, draft)))  # fmt: skip
    bounds = ", ".join(f"k={k}: {expected_speedup(agreement, cost, k):.2f}x" for k in range(1, 9))
    print(f"expected speed-up (1 - a^(k+1)) / ((1 - a)(k c + 1)): {bounds}")


def expected_speedup(a: float, c: float, k: int) -> float:
    """Leviathan et al. (2023), eq. 1 and Theorem 3.8: tokens per verifying step over its cost in model steps."""
    tokens = (k + 1) if a >= 1 else (1 - a ** (k + 1)) / (1 - a)
    return tokens / (k * c + 1)


@torch.inference_mode()
def held_out_perplexity(model, ids: torch.Tensor, blocks: int = 16, length: int = 256) -> float:
    """exp(mean NLL per token) on the first `blocks` blocks of the held-out ids (what a draft's quality costs)."""
    nll = 0.0
    for i in range(blocks):
        block = ids[i * length : (i + 1) * length][None]
        nll += model(block, labels=block).loss.item()
    return math.exp(nll / blocks)


@torch.inference_mode()
def top1_agreement(model, draft, ids: torch.Tensor, tokens: int = 512) -> float:
    """How often the draft's greedy next token is the model's on the first `tokens` held-out ids."""
    window = ids[:tokens][None]
    return (model(window).logits.argmax(-1) == draft(window).logits.argmax(-1)).float().mean().item()


if __name__ == "__main__":
    main()
