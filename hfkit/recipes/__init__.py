"""The recipes behind the `hfkit` command: one module per command, each thin (parse -> build -> train -> report).

Run them as `hfkit <command> ...`, `python -m hfkit <command> ...`, or `python recipes/<command>.py ...` in a
clone; their configs ship in configs/<command>/<model>_<variant>.yaml.
"""
