"""The project's log: internal errors (bugs, not bad input) are written with their traceback to one file in the
workspace, so a page or a command line can say "an internal error, logged at ..." instead of blaming the input."""

from __future__ import annotations

import logging
from pathlib import Path

from ecgcore.workspace import subdir

LOGS = "logs"
LOG_FILE = "ecglab.log"
LOGGER_NAME = "ecglab"


def log_path() -> Path:
    """The log file of the current workspace (its folder is created)."""
    return subdir(LOGS) / LOG_FILE


def logger() -> logging.Logger:
    """The ``ecglab`` logger, writing to :func:`log_path` (the handler follows the workspace if it changes)."""
    log = logging.getLogger(LOGGER_NAME)
    path = log_path()
    handlers = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
    if not handlers or Path(handlers[0].baseFilename) != path.resolve():
        for h in handlers:
            log.removeHandler(h)
            h.close()
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return log


def internal_error(exc: BaseException, where: str) -> str:
    """Log ``exc`` with its traceback and return the sentence to show: what failed and where the details are."""
    try:
        path = log_path()
        logger().error("internal error in %s", where, exc_info=(type(exc), exc, exc.__traceback__))
        place = f"logged at {path}"
    except OSError as log_exc:  # an unwritable workspace must not hide the first error
        place = f"and could not be logged ({log_exc})"
    return f"an internal error stopped {where} ({type(exc).__name__}: {exc}); this is a bug, not your input, {place}."
