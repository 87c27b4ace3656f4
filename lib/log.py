"""Logging: the standard ``logging`` module, one logger per module under the ``liftlake`` tree
(``logging.getLogger(__name__)``). A job configures it once (``configure``): the platform's lines at
INFO on stderr as ``[liftlake] ...``, the resolved config at DEBUG, Spark's own log at WARN, so an
Airflow task log shows the platform's lines first."""
from __future__ import annotations

import logging
import sys

ROOT = "liftlake"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(level: str = "INFO") -> logging.Logger:
    """Idempotent: one stderr handler on the ``liftlake`` logger, at ``level``."""
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[liftlake] %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)
    return root


def log_commits(logger: logging.Logger, step: str, results) -> None:
    """One line per table a ``commit_together()`` block committed, once it has."""
    for res in results:
        logger.info(f"{step}: committed {res.table} v{res.version} ({res.rows} rows, partitions {list(res.partitions)})")
