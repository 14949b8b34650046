"""A terminal progress bar for long loops over subjects (rich, on stderr)."""

from __future__ import annotations


class ProgressBar:
    """A rich progress bar on stderr naming the item just done (silent when disabled or with nothing to do)."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.p = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=False,
            )
            self.p.start()
            self.t = self.p.add_task("", total=total)

    def advance(self, what: str) -> None:
        if self.p is not None:
            self.p.update(self.t, advance=1, description=what)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
            self.p = None
