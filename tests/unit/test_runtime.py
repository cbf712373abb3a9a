"""hfkit.runtime: how a recipe ends on a user error (one message, exit 2) and on a bug (traceback)."""

from __future__ import annotations

import errno

import pytest

from hfkit.errors import MissingInputError, UserInputError
from hfkit.parsing import ConfigError
from hfkit.runtime import run_recipe


def failing(error: Exception):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        UserInputError("bad value 3 for x: use 2"),
        MissingInputError("no file a.csv"),
        ConfigError("unknown key"),
    ],
)
def test_user_error_is_one_message_and_exit_2(error, capsys, monkeypatch):
    monkeypatch.delenv("HFKIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_recipe(failing(error), [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_of_a_user_error(how, capsys, monkeypatch):
    argv = ["--debug"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("HFKIT_DEBUG", "1")
    seen = []

    def main(args):
        seen.append(args)
        raise UserInputError("bad value")

    with pytest.raises(SystemExit) as info:
        run_recipe(main, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("error: bad value")
    assert seen == [[]]  # the bare --debug flag is hfkit's, not passed to the recipe's parser


def test_trainingarguments_debug_option_is_passed_through(monkeypatch):
    monkeypatch.delenv("HFKIT_DEBUG", raising=False)
    seen = []
    run_recipe(seen.append, ["--debug", "underflow_overflow", "--x", "1"])
    assert seen == [["--debug", "underflow_overflow", "--x", "1"]]


def test_other_errors_keep_their_traceback(monkeypatch):
    monkeypatch.delenv("HFKIT_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="a bug"):
        run_recipe(failing(RuntimeError("a bug")), [])
    with pytest.raises(ValueError, match="plain"):  # not a UserInputError: a library's or hfkit's bug
        run_recipe(failing(ValueError("plain")), [])


def test_full_disk_is_a_user_error_naming_the_file(capsys, monkeypatch):
    monkeypatch.delenv("HFKIT_DEBUG", raising=False)
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/model.safetensors")
    with pytest.raises(SystemExit) as info:
        run_recipe(failing(full), [])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no space left" in err and "/runs/x/model.safetensors" in err
    with pytest.raises(PermissionError):  # other OS errors keep their traceback
        run_recipe(failing(PermissionError(errno.EACCES, "denied")), [])


def test_ctrl_c_says_how_to_resume(capsys, monkeypatch):
    monkeypatch.delenv("HFKIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_recipe(failing(KeyboardInterrupt()), [])
    err = capsys.readouterr().err
    assert info.value.code == 130 and "rerun the same command to resume" in err and "Traceback" not in err
