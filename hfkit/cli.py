"""The `hfkit` command: run a recipe from a shipped config or your own YAML, with command-line overrides.

    hfkit distill --config distill/minilm_l3_sst2_demo          # a shipped config, by name
    hfkit classify --config my_task.yaml --learning_rate 3e-5    # your own YAML, one key overridden
    hfkit distill --help                                         # every key, with help and default
    accelerate launch -m hfkit distill --config ...              # the same under accelerate

Each command is the module hfkit/recipes/<command>.py; recipes/<command>.py in a clone calls the same code.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import subprocess
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


@contextlib.contextmanager
def _user_errors():
    """A config error of the small commands: one `error:` line and exit code 2."""
    from .errors import UserInputError

    try:
        yield
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


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
    if command == "cp":
        from .parsing import copy_config

        args = [a for a in rest if a != "--force"]
        if len(args) != 2:
            print("error: usage: hfkit cp <shipped config> <file or folder> [--force]", file=sys.stderr)
            raise SystemExit(2)
        with _user_errors():
            print(f"wrote {copy_config(args[0], args[1], overwrite='--force' in rest)}")
        return
    if command == "accelerate-config":
        from .parsing import accelerate_config_path, shipped_accelerate_configs

        with _user_errors():
            print(accelerate_config_path(rest[0]) if rest else "\n".join(shipped_accelerate_configs()))
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
    if "--accelerate_config" in rest:
        # Launch the same command under accelerate with a shipped (or given) accelerate config.
        at = rest.index("--accelerate_config")
        if at + 1 >= len(rest):
            print(
                "error: --accelerate_config needs a name or a file (hfkit accelerate-config lists them)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        from .parsing import accelerate_config_path

        with _user_errors():
            config = accelerate_config_path(rest[at + 1])
        launch = [
            "accelerate",
            "launch",
            "--config_file",
            str(config),
            "-m",
            "hfkit",
            command,
            *rest[:at],
            *rest[at + 2 :],
        ]
        raise SystemExit(subprocess.call(launch))
    from .runtime import run_recipe

    recipe = importlib.import_module(f"hfkit.recipes.{command}")
    sys.argv[0] = f"hfkit {command}"  # what argparse names in usage lines and --help
    run_recipe(recipe.main, rest)
