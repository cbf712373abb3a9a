"""Greedy decoding of a causal LM on the CPU: torch vs OpenVINO (float32 IR, int8 weights), tokens/s and quality.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/openvino_decoding.py --model outputs/clm_study/teacher

The model folder is exported twice with `hfkit.compress.openvino_lm.export_openvino_lm` (float32 IR; int8
weight-only IR), into `--work_dir`. Prompts: the first 32 tokens of held-out Tiny Shakespeare windows (the last
10% of the file, which the clm configs hold out), as in benchmarks/assisted_decoding.py. Each round decodes every
prompt with each runtime at each of `--batch_sizes` in turn (round-robin; greedy, up to `--max_new_tokens` new
tokens; a batch of B prompts left-padded and decoded together) through `hfkit.generation.generate_details`, the
path `hfkit generate` takes; the table gives tokens/s (median over rounds of summed new tokens / summed seconds
of the generate calls), the ratio to torch at the same batch size and to torch at batch 1, how many prompts gave
torch's greedy tokens (at the same batch size) exactly, and the held-out perplexity of each runtime (16 blocks of
256 tokens, the same ids for all: what a changed token costs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import tempfile

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from assisted_decoding import cpu_flags, greedy_setup, held_out_perplexity  # noqa: E402

from hfkit.compress.openvino_lm import OpenVinoCausalLM, export_openvino_lm  # noqa: E402
from hfkit.generation import generate_details  # noqa: E402
from hfkit.modeling import load_causal_lm, load_causal_lm_tokenizer  # noqa: E402


def openvino_perplexity(
    model: OpenVinoCausalLM, ids: torch.Tensor, blocks: int = 16, length: int = 256
) -> float:
    """exp(mean NLL per token) of the IR on the same blocks as `held_out_perplexity` (each block one prompt pass)."""
    request = model.compiled.create_infer_request()
    nll = 0.0
    for i in range(blocks):
        block = ids[i * length : (i + 1) * length][None]
        logits = torch.from_numpy(model.prompt_logits(block, request))
        nll += torch.nn.functional.cross_entropy(logits[0, :-1], block[0, 1:]).item()
    return math.exp(nll / blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a causal LM folder (llama or qwen2 family)")
    parser.add_argument(
        "--data", default=os.path.join(REPO, "..", "shared", "data", "tinyshakespeare", "input.txt")
    )
    parser.add_argument(
        "--work_dir", default=None, help="where the two OpenVINO folders go (default: a temp dir)"
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch_sizes", type=int, nargs="+", default=[1], help="prompts decoded together (each size a row)"
    )
    args = parser.parse_args()

    work = args.work_dir or tempfile.mkdtemp(prefix="openvino_decoding_")
    folders = {
        "openvino float32": export_openvino_lm(args.model, os.path.join(work, "ov")),
        "openvino int8 weights": export_openvino_lm(
            args.model, os.path.join(work, "ov_int8"), int8_weights=True
        ),
    }
    tokenizer = load_causal_lm_tokenizer(args.model)
    models = {"torch float32": load_causal_lm(args.model)}
    models.update({name: OpenVinoCausalLM(folder) for name, folder in folders.items()})
    held, prompts, gen = greedy_setup(args, tokenizer)
    for model in models.values():  # warm-up
        generate_details(model, tokenizer, prompts[:1], gen)
    variants = [(name, size) for size in args.batch_sizes for name in models]
    rates: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    same = dict.fromkeys(variants, 0)
    for r in range(args.rounds):
        for size in args.batch_sizes:
            batched = dataclasses.replace(gen, batch_size=size)
            done = {(name, size): [0, 0.0] for name in models}
            for start in range(0, len(prompts), size):
                chunk, reference = prompts[start : start + size], None
                for name, model in models.items():
                    rows = generate_details(model, tokenizer, chunk, batched)
                    done[name, size][0] += sum(len(g.token_ids) for g in rows)
                    done[name, size][1] += rows[0].seconds  # one generate call for the whole chunk
                    tokens = [g.token_ids for g in rows]
                    reference = tokens if reference is None else reference
                    same[name, size] += r == 0 and sum(t == e for t, e in zip(tokens, reference))
            for variant, (tokens, seconds) in done.items():
                rates[variant].append(tokens / seconds)
    held_ids = tokenizer(held, return_tensors="pt")["input_ids"][0]
    perplexity = {
        name: held_out_perplexity(model, held_ids)
        if name == "torch float32"
        else openvino_perplexity(model, held_ids)
        for name, model in models.items()
    }
    base = {size: statistics.median(rates["torch float32", size]) for size in args.batch_sizes}
    weights = {name: sum(os.path.getsize(os.path.join(f, n)) for n in os.listdir(f) if n.endswith((".bin", ".safetensors")))
               for name, f in {"torch float32": args.model, **folders}.items()}  # fmt: skip
    print(f"# Greedy decoding on {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"command: python benchmarks/openvino_decoding.py {' '.join(sys.argv[1:])}\n")
    print(f"{len(prompts)} prompts x {args.max_new_tokens} new tokens, {args.rounds} rounds\n")
    print("| runtime | batch | tokens/s | vs torch, same batch | vs torch, batch 1 | same greedy tokens as torch "
          "| held-out perplexity | weights MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, size in variants:
        rate = statistics.median(rates[name, size])
        ratio_1 = f"{rate / base[1]:.2f}x" if 1 in base else "-"
        print(f"| {name} | {size} | {rate:.1f} | {rate / base[size]:.2f}x | {ratio_1} | {same[name, size]}/"
              f"{len(prompts)} | {perplexity[name]:.2f} | {weights[name] / 1e6:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
