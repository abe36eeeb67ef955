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
    """No ECG could be read from an image (no grid or trace found, too small, ...)."""


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
