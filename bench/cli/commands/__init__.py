"""One module per command of `python -m bench`, each with its options beside it:

    HELP                          the command's line in `python -m bench --help`
    add_options(parser, chosen)   its options (chosen: this is the command being run, or the whole
                                  parser is built, so options that cost imports may be added)
    run(args) -> int              the command; an exit code

Modules import only what building the parser needs; a command loads the layers it uses when it
runs, so `bench list` and a spec error answer without importing the training engine.
"""

# the order of `python -m bench --help`
COMMANDS = (
    "run", "status", "report", "leaderboard", "perf", "data", "doctor", "plan", "teachers", "list",
)
