"""CPU latency of a teacher and its distilled student, measured in the same run.

    python benchmarks/distill_latency.py --teacher outputs/classify/minilm_sst2 \
        --student outputs/distill/minilm_l3_sst2 --batch_sizes 1 32

Prints ms per batch (median of --repeats rounds, both models timed round-robin in each round) and the
student's speed-up over the teacher.
"""

import argparse
import platform

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.data import load_data_file
from hfkit.evaluation import measure_latencies_together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--data", default="../shared/data/sst2/train.tsv")
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    texts = load_data_file(args.data)[args.text_column][:256]
    models = {}
    for name, path in (("teacher", args.teacher), ("student", args.student)):
        models[name] = (
            AutoModelForSequenceClassification.from_pretrained(path),
            AutoTokenizer.from_pretrained(path),
        )
    print(f"CPU: {platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()}")
    print("batch  teacher ms  student ms  speed-up")
    for bs in args.batch_sizes:
        ms = measure_latencies_together(models, texts, batch_size=bs, rounds=args.repeats)
        print(
            f"{bs:>5}  {ms['teacher']:>10.1f}  {ms['student']:>10.1f}  {ms['teacher'] / ms['student']:>7.2f}x"
        )


if __name__ == "__main__":
    main()
