"""The ``cordbench`` commands, one module each (``HELP``, ``add_arguments(parser)``, ``run(args)``).

:data:`COMMANDS` is the explicit table the CLI builds its sub-commands from: adding a command is adding
its module and one entry here.
"""

from cordbench.commands import (
    analyze,
    download,
    dti,
    fit,
    gmchallenge,
    leaderboard,
    models,
    morphometrics,
    phantom,
    predict,
    stats,
    sweep,
    test,
    validate,
)

#: command name (as typed) -> module, in ``--help`` order
COMMANDS = {
    mod.__name__.rpartition(".")[2].replace("_", "-"): mod
    for mod in (
        analyze,
        download,
        dti,
        fit,
        gmchallenge,
        leaderboard,
        models,
        morphometrics,
        phantom,
        predict,
        stats,
        sweep,
        test,
        validate,
    )
}
