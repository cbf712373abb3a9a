"""Messages dependencies print on every run that tell the user nothing, filtered on their own loggers.

Standard library only: `hfkit/__init__.py` installs these filters before anything imports transformers'
Trainer, which imports bitsandbytes, whose CPU backend logs at import time. Every other record of those
loggers, and every other warning, still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

__all__ = ["quiet_dependencies"]

# Messages dependencies log on every run that tell the user nothing, filtered on their own loggers (the
# rest of each logger, and every other warning, still shows). (logger, message prefix, shown once or never)
_NOISE = (
    # bitsandbytes on an AVX512-BF16 CPU without the optional `kernels` package: it falls back by itself.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward", False),
    # 8-bit matmuls on float32 inputs: one line per forward pass (hundreds per evaluation); once is enough.
    ("bitsandbytes.autograd._functions", "MatMul8bitLt: inputs will be cast", True),
    # Checkpoint rotation sorts by mtime; two checkpoints saved within a second make transformers say it falls
    # back to step order, which is the order hfkit wants anyway (fast machines, small models).
    ("transformers.trainer_utils", "mtime may not be reliable", False),
)
# Parameter names of a freshly initialised task head: MISSING when a classifier starts from a base model.
_NEW_HEAD = re.compile(r"^(classifier|score|pre_classifier|qa_outputs)\.")


class _MessageFilter(logging.Filter):
    """Drop records whose message starts with `prefix` (all of them, or all after the first)."""

    def __init__(self, prefix: str, once: bool):
        super().__init__()
        self.prefix, self.once, self.seen = prefix, once, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.once and not self.seen:
            self.seen = True
            return True
        return False


class _ExpectedLoadReport(logging.Filter):
    """Drop transformers' load report when its only finding is the new task head (expected when fine-tuning
    from a base model); any other missing, unexpected or mismatched weight is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [line.split("|") for line in message.splitlines() if line.count("|") >= 2]
        found = [(key.strip(), status.strip()) for key, status, *_ in rows if key.strip() not in ("Key", "")]
        found = [(key, status) for key, status in found if not set(key) <= {"-", "+"}]
        return not found or not all(status == "MISSING" and _NEW_HEAD.match(key) for key, status in found)


def quiet_dependencies() -> None:
    """Filter, on the dependencies' own loggers, the few messages that are noise on every run (idempotent)."""
    for name, prefix, once in _NOISE:
        target = logging.getLogger(name)
        if not any(isinstance(f, _MessageFilter) and f.prefix == prefix for f in target.filters):
            target.addFilter(_MessageFilter(prefix, once))
    for name in ("transformers.modeling_utils", "transformers.utils.loading_report"):  # who logs the report
        report = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedLoadReport) for f in report.filters):
            report.addFilter(_ExpectedLoadReport())
    # The Trainer asks for pinned memory by default; on a CPU-only machine torch warns on every DataLoader.
    warnings.filterwarnings(
        "ignore",
        message="'pin_memory' argument is set as true but no accelerator is found",
        category=UserWarning,
    )
