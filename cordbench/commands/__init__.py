"""The ``cordbench`` commands, one module each (``HELP``, ``add_arguments(parser)``, ``run(args)``).

:data:`COMMANDS` is the explicit table the CLI builds its sub-commands from: adding a command is adding
its module and one entry here.
"""

from types import ModuleType

from cordbench.commands import (  # noqa: F401 (the commands: gathered into COMMANDS below)
    analyze,
    download,
    dti,
    export,
    fit,
    gmchallenge,
    leaderboard,
    models,
    morphometrics,
    phantom,
    predict,
    score,
    slurm,
    stats,
    sweep,
    test,
    validate,
)

#: command name (as typed) -> module, in ``--help`` order: the modules imported above
COMMANDS = {
    module.__name__.rpartition(".")[2].replace("_", "-"): module
    for _name, module in sorted(globals().items())
    if isinstance(module, ModuleType) and module.__name__.startswith(__name__ + ".") and not _name.startswith("_")
}
