"""The exceptions that mean "the user gave something unusable": each carries one sentence for a person."""

from __future__ import annotations

from .dataset import DatasetError
from .imageio import ImageError
from .jobs import JobError
from .params import PresetError
from .signals import DataSourceError
from .workspace import WorkspaceError


class ModelError(ValueError):
    """Model weights are missing, corrupt, or do not match their model card."""


class DigitizationError(ValueError):
    """No ECG could be read from an image (no grid or trace found, too small, ...).

    The sentence speaks to anyone (a page shows it as it is); ``cli_hint`` is what a command line adds to it, the
    option that does what the sentence asks (e.g. ``with --layout NAME``), see :func:`cli_sentence`."""

    def __init__(self, message: str, cli_hint: str = ""):
        super().__init__(message)
        self.cli_hint = cli_hint


USER_ERRORS: tuple[type[BaseException], ...] = (
    DataSourceError,
    DatasetError,
    ImageError,
    PresetError,
    ModelError,
    DigitizationError,
    WorkspaceError,
    JobError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def cli_sentence(exc: BaseException) -> str:
    """An error's sentence for a command line: its own words, then its ``cli_hint`` when it has one."""
    text = str(exc).strip()
    hint = getattr(exc, "cli_hint", "")
    return f"{text.rstrip('.')} {hint}." if hint else text
