"""Quiet by default: dependency noise filtered on its own loggers, library INFO only with --log_level info."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import datasets
import pytest
import transformers
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hfkit import ClassifierConfig, ClassifierTrainer
from hfkit.logs import QuietProgressCallback, quiet_dependencies, quiet_progress, setup_logging
from tests.conftest import toy_dataset

LOAD_REPORT = (
    "\x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: base\n"
    "Key               | Status  | \n------------------+---------+-\n{rows}\n"
    "Notes:\n- MISSING:\tthose params were newly initialized because missing from the checkpoint."
)


@pytest.fixture
def restore_library_logging():
    level, ds_level = transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity()
    yield
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(ds_level)
    transformers.utils.logging.enable_progress_bar()
    datasets.enable_progress_bars()


def emitted(logger_name: str, message: str, times: int = 1) -> int:
    """How many of `times` identical records pass the logger's own filters."""
    logger = logging.getLogger(logger_name)
    record = logger.makeRecord(logger_name, logging.WARNING, __file__, 1, message, None, None)
    return sum(bool(logger.filter(record)) for _ in range(times))


def test_dependency_noise_is_filtered_on_its_own_logger():
    quiet_dependencies()
    quiet_dependencies()  # idempotent: no second filter
    assert len(logging.getLogger("bitsandbytes.backends.cpu.ops").filters) == 1
    gemm = "Failed to load CPU gemm_4bit_forward from kernels-community: no module named kernels"
    assert emitted("bitsandbytes.backends.cpu.ops", gemm) == 0
    assert emitted("bitsandbytes.backends.cpu.ops", "something else went wrong") == 1
    cast = "MatMul8bitLt: inputs will be cast from torch.float32 to float16 during quantization"
    assert emitted("bitsandbytes.autograd._functions", cast, times=300) <= 1  # once per process at most


def test_filters_are_in_place_before_bitsandbytes_is_imported():
    """`import hfkit` installs the filters before transformers' Trainer imports bitsandbytes (whose CPU backend
    logs at import on AVX512-BF16 machines): checked in a fresh interpreter at the moment of that import."""
    code = (
        "import builtins, logging\n"
        "seen, original = [], builtins.__import__\n"
        "def spy(name, *args, **kwargs):\n"
        "    if name.startswith('bitsandbytes') and not seen:\n"
        "        seen.append(bool(logging.getLogger('bitsandbytes.backends.cpu.ops').filters))\n"
        "    return original(name, *args, **kwargs)\n"
        "builtins.__import__ = spy\n"
        "import hfkit, hfkit.trainers\n"
        # Whether transformers or peft import bitsandbytes eagerly depends on their versions (peft 0.22 does
        # not): import it here too, so the first import, wherever it happens, is the one checked.
        "import bitsandbytes\n"
        "print(seen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[True]"
    assert "gemm_4bit_forward" not in out.stderr


def test_load_report_of_a_new_head_is_dropped_but_other_findings_stay():
    quiet_dependencies()
    new_head = LOAD_REPORT.format(rows="classifier.weight | MISSING | \nclassifier.bias   | MISSING | ")
    assert emitted("transformers.modeling_utils", new_head) == 0
    lost = LOAD_REPORT.format(rows="classifier.weight | MISSING | \nbert.encoder.layer.0.weight | MISSING | ")
    assert emitted("transformers.modeling_utils", lost) == 1
    unexpected = LOAD_REPORT.format(rows="classifier.weight | UNEXPECTED | ")
    assert emitted("transformers.modeling_utils", unexpected) == 1


def test_pin_memory_warning_on_cpu_is_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_dependencies()
        warnings.warn(
            "'pin_memory' argument is set as true but no accelerator is found, then ...",
            UserWarning,
            stacklevel=2,
        )
        warnings.warn("another warning", UserWarning, stacklevel=2)
    assert [str(w.message) for w in caught] == ["another warning"]


def test_library_info_only_with_log_level_info(tmp_path, restore_library_logging):
    setup_logging(ClassifierConfig(output_dir=str(tmp_path)))
    assert transformers.utils.logging.get_verbosity() == logging.WARNING
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert not datasets.is_progress_bar_enabled()
    assert logging.getLogger("hfkit").getEffectiveLevel() == logging.INFO
    setup_logging(ClassifierConfig(output_dir=str(tmp_path), log_level="info"))
    assert transformers.utils.logging.get_verbosity() == logging.INFO
    assert datasets.is_progress_bar_enabled() and transformers.utils.logging.is_progress_bar_enabled()


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_quiet_progress_prints_no_dict_per_logging_step(
    tmp_path, tiny_bert, tiny_tokenizer, capsys, disable_tqdm
):
    config = ClassifierConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", logging_steps=1, max_steps=3,
        eval_strategy="no", save_strategy="no", disable_tqdm=disable_tqdm, per_device_train_batch_size=8,
    )  # fmt: skip
    trainer = ClassifierTrainer(
        model=tiny_bert, args=config, train_dataset=toy_dataset(tiny_tokenizer, 24, seed=1),
        processing_class=tiny_tokenizer,
    )  # fmt: skip
    quiet_progress(trainer)
    callbacks = [type(c) for c in trainer.callback_handler.callbacks]
    assert ProgressCallback not in callbacks and PrinterCallback not in callbacks
    assert (QuietProgressCallback in callbacks) != disable_tqdm
    trainer.train()
    captured = capsys.readouterr()
    assert "{'loss'" not in captured.out + captured.err
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3]  # still logged


@pytest.mark.parametrize("ci", ["", "1"])
def test_library_warnings_print_once_in_hfkit_format(ci):
    """transformers propagates to the root logger when `CI` is set (datasets always) while keeping its own
    handler: without hfkit's one-handler setup every warning printed twice. The mtime notice of checkpoint
    rotation is noise (transformers falls back to step order by itself)."""
    code = (
        "import logging, transformers\n"
        "from hfkit.logs import setup_logging\n"
        "setup_logging(transformers.TrainingArguments(output_dir='unused', report_to='none'))\n"
        "logging.getLogger('transformers.trainer').warning('the transformers warning')\n"
        "logging.getLogger('datasets.builder').warning('the datasets warning')\n"
        "logging.getLogger('transformers.trainer_utils').warning("
        "'mtime may not be reliable on this filesystem, falling back to numerical ordering')\n"
        "logging.getLogger('hfkit').info('the phase line')\n"
    )
    env = {**os.environ, "CI": ci}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    lines = out.stderr.splitlines()
    shown = [line for line in lines if "the transformers warning" in line]
    assert len(shown) == 1 and shown[0].endswith("WARNING transformers.trainer: the transformers warning")
    assert sum("the datasets warning" in line for line in lines) == 1
    assert sum("the phase line" in line for line in lines) == 1
    assert "mtime" not in out.stderr
