"""Progress bars for long CLI work, drawn only on a terminal.

The library marks its progress lines with `extra={"progress": (label, done, total)}` (epochs);
the flows count tickers and folds off the same way with records that exist only for the bar
(`bar_only`). On a terminal each label gets a live bar that shows the latest such line, and every
other line prints above the bars. Elsewhere (a log file, a scheduler, CI) this handler is not
installed: each library line is printed once, plainly, with no control characters, and the
bar-only records are dropped.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

if TYPE_CHECKING:  # the CLI configures its logging before prefect is imported
    from prefect.futures import PrefectFuture

log = logging.getLogger(__name__)


def wait_counting(
    futures: Sequence[PrefectFuture[Any]], label: str, sizes: Sequence[int] | None = None
) -> None:
    """Wait for every future; on a terminal a bar counts them off as they finish, each as
    `sizes[i]` items (a batch of tickers) when given, else as one."""
    from prefect.futures import as_completed

    weight = dict(zip(map(id, futures), sizes or [1] * len(futures), strict=True))
    done, total = 0, sum(weight.values())
    for future in as_completed(list(futures)):
        done += weight[id(future)]
        count_off(label, done, total)


class Counter:
    """Counts items off under `label` as they are done, towards `total`."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0

    def __call__(self, items: int) -> None:
        self.done += items
        count_off(self.label, self.done, self.total)


def count_off(label: str, done: int, total: int) -> None:
    """`done` of `total` items under `label`: a bar's progress on a terminal, nothing elsewhere."""
    progress = {"progress": (label, done, total), "bar_only": True}
    log.info("%d of %d %s done", done, total, label, extra=progress)


def plain_lines() -> logging.Handler:
    """Progress as one line per record on stdout, without the bar-only counts."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(lambda r: r.levelno < logging.WARNING and not getattr(r, "bar_only", False))
    return handler


class TerminalProgress(logging.Handler):
    """Bars from progress records, the other records below WARNING as lines above them."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(lambda record: record.levelno < logging.WARNING)  # stderr has those
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
