"""The reference of every config key per command, generated from the dataclasses' own help texts.

`hfkit reference > docs/config_reference.md` writes it; a test fails when the committed file is stale, so the
reference cannot drift from the code. Fields that `transformers.TrainingArguments` declares (and hfkit keeps
at its default) are not repeated: `hfkit <command> --help` lists them for the installed version.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import re
from typing import Any, get_type_hints

from transformers import TrainingArguments

from .recipes import COMMANDS

_TRAINING_ARGUMENTS = {f.name: f for f in dataclasses.fields(TrainingArguments)}
_CLASS_REPR = re.compile(r"<class '([^']+)'>")
_MODULE_PATH = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _show_default(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`" if value else "`''`"


def _show_type(hint: Any) -> str:
    text = hint.__name__ if isinstance(hint, type) else _CLASS_REPR.sub(r"\1", str(hint))
    return _MODULE_PATH.sub(r"\1", text).replace("NoneType", "None")


def _inherited_unchanged(f: dataclasses.Field) -> bool:
    """A TrainingArguments field that hfkit neither re-declares with another default nor documents anew."""
    base = _TRAINING_ARGUMENTS.get(f.name)
    if base is None:
        return False
    same_default = repr(_default(base)) == repr(_default(f))
    return same_default and base.metadata.get("help") == f.metadata.get("help")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def dataclass_reference(dtype: type) -> list[str]:
    """Markdown lines for one dataclass: a heading, its docstring's first line, a table of its keys."""
    hints = get_type_hints(dtype)
    doc = (dtype.__doc__ or "").strip()
    lines = [f"#### `{dtype.__name__}`", ""]
    if doc and not doc.startswith(f"{dtype.__name__}("):
        lines += [_cell(doc.splitlines()[0]), ""]
    rows = [f for f in dataclasses.fields(dtype) if f.init and not _inherited_unchanged(f)]
    lines += ["| key | type | default | help |", "|---|---|---|---|"]
    lines += [
        f"| `{f.name}` | `{_cell(_show_type(hints[f.name]))}` | {_cell(_show_default(_default(f)))} | "
        f"{_cell(f.metadata.get('help', ''))} |"
        for f in rows
    ]
    if issubclass(dtype, TrainingArguments):
        lines += [
            "",
            "Plus every other `transformers.TrainingArguments` key at its default "
            "(`hfkit <command> --help` lists them with help).",
        ]
    return lines + [""]


def config_reference() -> str:
    """The whole reference, as Markdown: for each command, the keys of each of its dataclasses."""
    lines = [
        "# Config reference",
        "",
        "Generated from the code by `hfkit reference > docs/config_reference.md` (a test fails when this file is",
        "stale). Every key can be set in the YAML file given to `--config` or on the command line as",
        "`--key value`; the command line wins. Lists are YAML lists, or space-separated values on the command line.",
        "",
    ]
    for command in COMMANDS:
        recipe = importlib.import_module(f"hfkit.recipes.{command}")
        lines += [f"## `hfkit {command}`", "", COMMANDS[command][0].upper() + COMMANDS[command][1:] + ".", ""]
        for dtype in recipe.ARG_TYPES:
            lines += dataclass_reference(dtype)
    return "\n".join(lines).rstrip() + "\n"
