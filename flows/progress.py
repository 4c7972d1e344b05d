"""Progress bars for long CLI work, drawn only on a terminal.

The library marks its progress lines with `extra={"progress": (label, done, total)}` (epochs;
the flows add tickers and folds). On a terminal each label gets a live bar that shows the latest
such line, and every other line prints above the bars. Elsewhere (a log file, a scheduler, CI)
this handler is not installed: each line is printed once, plainly, with no control characters.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class TerminalProgress(logging.Handler):
    """Bars from progress records, the other records as lines above them."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.bars = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[latest]}"),
            console=Console(file=sys.stdout),
        )
        self.tasks: dict[str, TaskID] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "progress", None)
        if event is None:
            line = self.format(record)
            self.bars.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        label, done, total = event
        if label not in self.tasks:
            self.bars.start()
            self.tasks[label] = self.bars.add_task(label, total=total, latest="")
        self.bars.update(self.tasks[label], completed=done, total=total, latest=record.getMessage())
        if all(t.finished for t in self.bars.tasks):
            self.bars.stop()  # the finished bars stay on screen as they were last drawn
            for task in self.tasks.values():  # so the next fit's bars start afresh below
                self.bars.remove_task(task)
            self.tasks.clear()

    def close(self) -> None:
        self.bars.stop()
        super().close()


def on_a_terminal() -> bool:
    return sys.stdout.isatty()
