"""The exceptions that mean "the user gave something unusable": each carries one sentence for a person.

This module imports nothing from the project, so every stage can raise these without loading any other. Anything
that is not a :class:`UserError` (or one of the OS errors in :data:`USER_ERRORS`) is a bug: pages and command lines
log it with its traceback (:mod:`ecgcore.logs`) and say so, instead of blaming the input."""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave (a file, a folder, a name, a setting) cannot be used; the message is one sentence."""


class DataSourceError(UserError):
    """A data source is missing or incomplete; the message is one sentence saying what and how to fix it."""


class DatasetError(UserError):
    """A dataset folder is missing, unwritable or inconsistent; one sentence."""


class ImageError(UserError):
    """An input is not a usable image; the message is one sentence for the user."""


class PresetError(UserError):
    """A preset or parameter is invalid; the message names the parameter."""


class WorkspaceError(UserError):
    """A user-given name or path is unusable (e.g. it would escape the workspace); one sentence."""


class JobError(UserError):
    """A job cannot be launched, cancelled or resumed as asked; one sentence."""


class ConfigError(UserError):
    """A training setting is out of range; the message names the setting."""


class ModelError(UserError):
    """Model weights are missing, corrupt, or do not match their model card."""


class DigitizationError(UserError):
    """No ECG could be read from an image (no grid or trace found, too small, ...).

    The sentence speaks to anyone (a page shows it as it is); ``cli_hint`` is what a command line adds to it, the
    option that does what the sentence asks (e.g. ``with --layout NAME``), see :func:`cli_sentence`."""

    def __init__(self, message: str, cli_hint: str = ""):
        super().__init__(message)
        self.cli_hint = cli_hint


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
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
