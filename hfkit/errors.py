"""Errors the user can fix: a bad config value, a missing file or column, a wrong label set, a model path.

Recipes (and the `hfkit` command) print these as one message and exit with code 2, without a traceback
(set HFKIT_DEBUG=1 or pass --debug to see it); any other exception is a bug in hfkit or a library and keeps
its traceback. Both subclass the built-in error a caller would expect, so `except ValueError` still works.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user; the message names the value and how to fix it."""


class MissingInputError(UserInputError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what it should be)."""
