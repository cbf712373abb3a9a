"""The one parser every recipe uses: a YAML file (``--config file.yaml``) plus command-line overrides.

Modelled on TRL's ``TrlParser``: the YAML values become the ``HfArgumentParser`` defaults, then the command
line is parsed on top (so CLI flags win) and each dataclass is built once, so ``__post_init__`` checks the final
values. Unknown keys (in the YAML or on the command line) are errors that suggest the closest valid key.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml
from transformers import HfArgumentParser

from .errors import UserInputError

# The YAML configs shipped inside the package (hfkit/recipes/configs/<command>/<name>.yaml).
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "recipes" / "configs"
ACCELERATE_CONFIGS = Path(__file__).resolve().parent / "accelerate_configs"

__all__ = [
    "ConfigError",
    "data_dir",
    "expand_variables",
    "load_yaml_config",
    "parse_args",
    "resolve_config",
    "shipped_configs",
    "valid_keys",
]

_HINT = "(run with --help for all keys)"


class ConfigError(UserInputError):
    """A bad config: missing or malformed YAML, an unknown key, or a value of the wrong type or choice."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: ``5e-5`` is a float and only true/false are bools (``no`` stays 'no')."""


_BOOL, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def shipped_configs() -> list[str]:
    """Names of the configs shipped with hfkit, as ``<command>/<name>`` (what ``--config`` accepts)."""
    return sorted(
        p.relative_to(SHIPPED_CONFIGS).with_suffix("").as_posix() for p in SHIPPED_CONFIGS.rglob("*.yaml")
    )


def shipped_accelerate_configs() -> list[str]:
    """Names of the accelerate configs shipped with hfkit (``single_gpu_bf16``, ``multi_node_fsdp``, ...)."""
    return sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))


def accelerate_config_path(value: str | Path) -> Path:
    """An accelerate config: an existing file, else a shipped one by name (``.yaml`` optional)."""
    path = Path(value)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    if (ACCELERATE_CONFIGS / f"{name}.yaml").is_file():
        return ACCELERATE_CONFIGS / f"{name}.yaml"
    names = shipped_accelerate_configs()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    raise ConfigError(
        f"accelerate config not found: {value} (no such file, and no shipped one of that name); shipped: "
        f"{', '.join(names)}{f' (did you mean: {close[0]}?)' if close else ''}."
    )


def copy_config(name: str, destination: str | Path, overwrite: bool = False) -> Path:
    """Copy a shipped config (a recipe config such as ``distill/minilm_l3_sst2``, or an accelerate config such
    as ``single_gpu_bf16``) to `destination` (a file, or a folder to copy into) to edit; never over an existing
    file unless `overwrite`. Returns the written path."""
    try:
        source = resolve_config(name)
    except ConfigError:
        try:
            source = accelerate_config_path(name)
        except ConfigError:
            raise ConfigError(
                f"no shipped config named {name!r}: `hfkit configs` lists the recipe configs, `hfkit "
                "accelerate-config` the accelerate configs."
            ) from None
    target = Path(destination)
    if target.is_dir():
        target = target / source.name
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists: choose another path, or pass --force to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def resolve_config(value: str | Path) -> Path:
    """The YAML file ``--config`` names: an existing file, else a shipped config by name.

    Shipped names are ``<command>/<name>`` (``distill/minilm_l3_sst2_demo``, ``.yaml`` optional), or the bare
    ``<name>`` when only one command ships a config of that name. Paths inside a config (data files, output
    folders) stay relative to the directory the command runs from, as for any other config; the shipped data
    paths start at ``${HFKIT_DATA}`` (see `data_dir`).
    """
    path = Path(value)
    if path.is_file():
        return path
    name = path.as_posix().removesuffix(".yaml").removeprefix("recipes/configs/")
    names = shipped_configs()
    matches = [n for n in names if n == name] or [n for n in names if n.split("/", 1)[-1] == name]
    if len(matches) == 1:
        return SHIPPED_CONFIGS / f"{matches[0]}.yaml"
    if len(matches) > 1:
        raise ConfigError(f"config name {name!r} is ambiguous: use one of {', '.join(matches)}")
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}?" if close else "; `hfkit configs` lists the shipped ones"
    raise ConfigError(
        f"config file not found: {value} (no such file, and no shipped config of that name){hint}; pass an "
        "existing YAML file or a shipped config name with --config."
    )


DATA_VARIABLE = "HFKIT_DATA"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def data_dir() -> str | None:
    """The folder ``${HFKIT_DATA}`` stands for in a config: the environment variable when set, else the first
    ``shared/data`` folder found beside the working directory, the hfkit package or the Python environment, or
    one of their parents (a clone with ``../shared/data`` next to it works from any directory, also from a
    plain ``pip install`` into a virtual environment inside the clone); None when there is none."""
    if os.environ.get(DATA_VARIABLE):
        return os.environ[DATA_VARIABLE]
    starts = [Path.cwd(), Path(__file__).resolve().parent, Path(sys.prefix).resolve()]
    for start in starts:
        for folder in [start, *start.parents]:
            if (folder / "shared" / "data").is_dir():
                return str(folder / "shared" / "data")
    return None


# Names of variables that hold secrets (HF_TOKEN, AWS_SECRET_ACCESS_KEY, DB_PASSWORD, ...): never expanded into a
# config, whose values are saved with the run. TOKEN not followed by a letter: MAX_TOKENS and TOKENIZER_DIR are fine.
_SECRET_VARIABLE = re.compile(
    r"TOKEN(?![A-Z])|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL"
)


def expand_variables(value: Any, where: str = "a config value") -> Any:
    """``${NAME}`` and ``${NAME:-default}`` in the strings of a config value, from the environment; ``${HFKIT_DATA}``
    falls back to `data_dir`. A variable with no value and no default is a ConfigError (a path would otherwise
    keep the literal ``${NAME}``), and so is a secret-looking name such as ``${HF_TOKEN}`` (config values are saved
    with the run); `where` names the value in the message, which never holds a variable's value."""

    def one(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if _SECRET_VARIABLE.search(name.upper()):
            raise ConfigError(
                f"${{{name}}} in {where}: a secret (a variable named like a token, password or key) is never "
                "expanded into a config, because config values are saved with the run (run.json, "
                "training_args.bin, the model card). A Hub token is read from the environment by huggingface_hub "
                "itself (HF_TOKEN, or `hf auth login`) and must not be written into a config: remove "
                f"${{{name}}} from it."
            )
        found = os.environ.get(name) or (data_dir() if name == DATA_VARIABLE else None)
        if found:
            return found
        if default is not None:
            return default
        if name == DATA_VARIABLE:
            raise ConfigError(
                f"${{{name}}} in {where} has no value: the {name} environment variable is not set and no "
                "shared/data folder was found beside the working directory, the hfkit package or the Python "
                f"environment. Set it to the folder that holds the data sets (export {name}=/path/to/shared/data), "
                "or pass this value on the command line."
            )
        raise ConfigError(
            f"${{{name}}} in {where} has no value: the environment variable {name} is not set (or is empty). "
            f"Set it (export {name}=...), give a default with ${{{name}:-default}}, or pass this value on the "
            "command line."
        )

    if isinstance(value, str):
        return _VARIABLE.sub(one, value)
    if isinstance(value, list):
        return [expand_variables(v, where) for v in value]
    if isinstance(value, dict):
        return {k: expand_variables(v, where) for k, v in value.items()}
    return value


def load_yaml_config(path: str | Path, given: Collection[str] = ()) -> dict[str, Any]:
    """Read a YAML config file (or a shipped config by name, see `resolve_config`) into a dict, its variables
    expanded; the values of the keys in `given` (set on the command line, which wins) are left as written."""
    path = resolve_config(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML in {path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level of {path} must be a mapping of key: value, got {type(data).__name__}")
    return {k: v if k in given else expand_variables(v, f"{k!r} in {path}") for k, v in data.items()}


def valid_keys(dataclass_types: Sequence[type]) -> list[str]:
    """Every init field name across the dataclasses, in order, without duplicates."""
    return list(dict.fromkeys(f.name for dt in dataclass_types for f in dataclasses.fields(dt) if f.init))


def _check_known(keys: Sequence[Any], valid: list[str], where: str) -> None:
    """Raise one ConfigError listing every key not in ``valid``, each with its closest valid keys."""
    errors = []
    for key in (k for k in keys if k not in valid):
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        errors.append(f"unknown key {str(key)!r} in {where}{hint} {_HINT}")
    if errors:
        raise ConfigError("\n".join(errors))


def _check_no_secret(keys: Sequence[Any], where: str) -> None:
    """Refuse a Hub token given as a setting: Trainer would save it with the run (training_args.bin)."""
    secret = [str(k) for k in keys if str(k).endswith("_token")]
    if secret:
        raise ConfigError(
            f"{', '.join(secret)} in {where}: a token is never given as a setting (it would be saved with the run "
            "and stay in your shell history). Set the HF_TOKEN environment variable or run `hf auth login`."
        )


def _coerce(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """Convert a YAML value the way argparse converts the same value given on the command line."""
    if action.nargs in ("+", "*") and value is not None and not isinstance(value, list | tuple):
        value = [value]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        if isinstance(value, list | tuple) and action.type is not None:
            value = [action.type(v) if isinstance(v, str) else v for v in value]
        elif action.type is not None and (isinstance(value, str) or (number and action.type in (float, str))):
            value = action.type(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        raise ConfigError(f"invalid value {value!r} for {key!r} in {where}: {e}") from e
    if action.choices is not None and value is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"invalid value {value!r} for {key!r} in {where}; choose from: {choices}")
    return value


_NONE_WORDS = ("null", "Null", "NULL", "~")  # YAML's nulls; not "none": report_to none is a value


def _or_none(convert):
    """An argparse type that reads null/~ as None and everything else with `convert`."""

    def parse(value: str):
        return None if value in _NONE_WORDS else convert(value)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its errors
    return parse


class _GroupedParser(HfArgumentParser):
    """HfArgumentParser whose --help lists each dataclass's fields under its own heading, with help and default."""

    def _add_dataclass_arguments(self, dtype: type) -> None:
        doc = (dtype.__doc__ or "").strip()
        auto = doc.startswith(
            f"{dtype.__name__}("
        )  # the signature dataclasses write when there is no docstring
        group = self.add_argument_group(dtype.__name__, None if auto or not doc else doc.splitlines()[0])
        hints = get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            if f.init:
                f.type = hints[f.name]
                self._parse_dataclass_field(group, f)
                if type(None) in get_args(hints[f.name]):  # `X | None`: `--key null` (as in YAML) gives None
                    action = self._option_string_actions.get(f"--{f.name}")
                    if action is not None and action.type is not None:
                        action.type = _or_none(action.type)


def parse_args(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """Parse ``--config file.yaml`` plus CLI overrides (CLI wins) into one instance per dataclass type, in order."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(list(sys.argv[1:] if args is None else args))
    parser = _GroupedParser(list(dataclass_types), allow_abbrev=False)
    parser.add_argument(
        "--config",
        metavar="FILE_OR_NAME",
        help="YAML file of defaults, or a shipped config by name (`hfkit configs` lists them); "
        "command-line flags override it",
    )
    keys = valid_keys(dataclass_types)
    if known.config is not None:
        # A key set on the command line replaces the file's value, so that value is not expanded: a shipped config's
        # ${HFKIT_DATA} path needs no data folder when the file is given on the command line.
        options = parser._option_string_actions
        given = {options[s.split("=", 1)[0]].dest for s in rest if s.split("=", 1)[0] in options}
        values = load_yaml_config(known.config, given)
        _check_known(list(values), keys, str(known.config))
        _check_no_secret(list(values), str(known.config))
        actions: dict[str, argparse.Action] = {}
        for action in parser._actions:  # the first action of a dest is the field's own (not its --no_ twin)
            actions.setdefault(action.dest, action)
        values = {k: _coerce(actions[k], k, v, str(known.config)) for k, v in values.items()}
        for action in parser._actions:
            if action.dest in values:
                action.default, action.required = values[action.dest], False
    _, remaining = parser.parse_known_args(rest)  # check the CLI before any __post_init__ runs
    _check_known(
        [s.split("=", 1)[0].lstrip("-").replace("-", "_") for s in remaining if s.startswith("-")],
        keys,
        "command line",
    )
    _check_no_secret(
        [s.split("=", 1)[0].lstrip("-").replace("-", "_") for s in rest if s.startswith("--")], "command line"
    )
    if remaining:
        raise ConfigError(f"unexpected command-line arguments: {' '.join(remaining)} {_HINT}")
    try:
        *outputs, _ = parser.parse_args_into_dataclasses(
            rest, return_remaining_strings=True, look_for_args_file=False
        )
    except ValueError as e:  # a __post_init__ check (ours or TrainingArguments'): a value the user can change
        if isinstance(e, UserInputError):
            raise
        raise ConfigError(str(e)) from e
    return tuple(outputs[: len(dataclass_types)])
