"""The `hfkit` command: run a recipe from a shipped config or your own YAML, with command-line overrides.

    hfkit distill --config distill/minilm_l3_sst2_demo          # a shipped config, by name
    hfkit classify --config my_task.yaml --learning_rate 3e-5    # your own YAML, one key overridden
    hfkit distill --help                                         # every key, with help and default
    accelerate launch -m hfkit distill --config ...              # the same under accelerate

Each command is the module hfkit/recipes/<command>.py; recipes/<command>.py in a clone calls the same code.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

from .recipes import COMMANDS, TOOLS


def usage() -> str:
    """The top-level help: commands, tools, and how to get a command's keys."""
    width = max(map(len, [*COMMANDS, *TOOLS]))
    lines = [
        "usage: hfkit <command> --config FILE_OR_NAME [--key value ...]",
        "       hfkit <command> --help      every key of the command, grouped, with help and default",
        "",
        "commands:",
        *[f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()],
        "",
        "other:",
        *[f"  {name:<{width}}  {text}" for name, text in TOOLS.items()],
        "",
        "--config takes a YAML file or a shipped config name such as distill/minilm_l3_sst2_demo.",
        "A user error ends with one message and exit code 2; add --debug (or HFKIT_DEBUG=1) for the traceback.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `hfkit` console script and of `python -m hfkit`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "--version":
        from .version import __version__

        print(f"hfkit {__version__}")
        return
    if command == "configs":
        from .parsing import shipped_configs

        print("\n".join(shipped_configs()))
        return
    if command == "reference":
        from .reference import config_reference

        print(config_reference(), end="")
        return
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, [*COMMANDS, *TOOLS], n=2)
        hint = f" did you mean: {', '.join(close)}?" if close else ""
        print(f"error: unknown command {command!r};{hint} run `hfkit --help` for the list", file=sys.stderr)
        raise SystemExit(2)
    from .runtime import run_recipe

    recipe = importlib.import_module(f"hfkit.recipes.{command}")
    sys.argv[0] = f"hfkit {command}"  # what argparse names in usage lines and --help
    run_recipe(recipe.main, rest)
