"""One module per ``cordbench`` sub-command (see :mod:`cordbench.cli`)."""
