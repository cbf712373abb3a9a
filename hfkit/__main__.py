"""`python -m hfkit <command> ...` (and `accelerate launch -m hfkit <command> ...`): the `hfkit` command."""

from hfkit.cli import main

if __name__ == "__main__":
    main()
