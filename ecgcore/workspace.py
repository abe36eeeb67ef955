"""The workspace: the one folder where the app and its jobs write (datasets, runs, presets, jobs, uploads).

Its root is ``$ECGLAB_WORKSPACE`` (default ``<repo>/workspace``). Every name a user types or uploads (a dataset
name, a preset name, an uploaded file's name) goes through :func:`safe_join`, which refuses anything that would
land outside the folder it is joined to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ecgcore.errors import WorkspaceError  # noqa: F401  (raised here; defined with the other user errors)

WORKSPACE_ENV = "ECGLAB_WORKSPACE"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKSPACE = REPO_ROOT / "workspace"
WEIGHTS_DIR = REPO_ROOT / "weights"  # the shipped models and their cards
PRESETS_DIR = WEIGHTS_DIR / "presets"  # the shipped synthesis presets

# Sub-folders by purpose; pages and jobs agree on these names.
DATASETS = "datasets"
RUNS = "runs"
PRESETS = "presets"
JOBS = "jobs"
UPLOADS = "uploads"
SCREENSHOTS = "screenshots"
BACKGROUNDS = "backgrounds"  # the user's photos of surfaces, for the 'folder' background
CROPS = "crops"  # per-lead segmentation crops (pipelines.build_crops)
CLASS_SETS = "classification_sets"  # prototype-style classification images (pipelines.build_classification_set)
EVALUATIONS = "evaluations"  # JSON results of pipelines.evaluate

# A user-given name is one path component of ordinary characters: letters, digits, '.', '_', '-', ' ', '+'.
NAME_MAX = 120
_NAME_RE = re.compile(rf"^[A-Za-z0-9_][A-Za-z0-9 ._+\-]{{0,{NAME_MAX - 1}}}$")



def workspace_root(create: bool = True) -> Path:
    """The workspace folder ($ECGLAB_WORKSPACE, else <repo>/workspace), created when missing."""
    value = os.environ.get(WORKSPACE_ENV)
    root = Path(value).expanduser() if value else DEFAULT_WORKSPACE
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def subdir(name: str, root: str | os.PathLike | None = None) -> Path:
    """A purpose folder of the workspace (``datasets``, ``runs``, ...), created when missing."""
    folder = Path(root).resolve() if root is not None else workspace_root()
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def shown(user_text: str) -> str:
    """``user_text`` in quotes as the user typed it, for a sentence (``repr`` would double every backslash); only
    characters that cannot be seen (NUL, tab, newline) are written as escapes, so the sentence stays one line."""
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in user_text) + "'"


def check_name(user_name: str, what: str = "name") -> str:
    """Return ``user_name`` stripped if it is a plain file or folder name; raise WorkspaceError otherwise."""
    name = (user_name or "").strip()
    if not name:
        raise WorkspaceError(f"the {what} is empty; type a name such as 'my-dataset'.")
    if "/" in name or "\\" in name or "\x00" in name or ".." in name:
        raise WorkspaceError(f"the {what} {shown(user_name)} contains a path; use a plain name without '/', '\\' or "
                             "'..'.")
    if not _NAME_RE.match(name):
        raise WorkspaceError(
            f"the {what} {shown(user_name)} is not allowed; use up to {NAME_MAX} letters, digits, spaces, '.', '_', "
            "'-' or '+', not starting with a dot or a space."
        )
    return name


def safe_join(root: str | os.PathLike, user_name: str, what: str = "name", suffix: str = "") -> Path:
    """``root / user_name``, refusing names that are not one plain component or that resolve outside ``root``.

    ``suffix`` (e.g. ``.json``) is added unless the name already ends with it; the checks and their sentences are
    about the name as the user typed it. Symbolic links are resolved before the check, so a link inside ``root``
    that points elsewhere is refused too.
    """
    name = check_name(user_name, what)
    if suffix and not name.endswith(suffix):
        name += suffix
    base = Path(root).resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise WorkspaceError(f"the {what} {shown(user_name)} points outside {base}; choose a plain name inside it.")
    return path


def unique_path(path: Path) -> Path:
    """``path`` if nothing is there yet, else the first free ``STEM-2.SUFFIX``, ``STEM-3.SUFFIX``, ... beside it
    (for keeping both when a name is taken)."""
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def confine(root: str | os.PathLike, path: str | os.PathLike, what: str = "path") -> Path:
    """Resolve ``path`` (absolute, or relative to ``root``) and refuse it unless it lies inside ``root``."""
    base = Path(root).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if resolved != base and base not in resolved.parents:
        raise WorkspaceError(f"the {what} {shown(str(path))} is outside the workspace {base}.")
    return resolved


def list_folders(kind: str, marker: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Folders under the workspace's ``kind`` folder that hold a ``marker`` file (what makes them complete), by name."""
    folder = subdir(kind, root)
    return sorted(p for p in folder.iterdir() if (p / marker).is_file())


def list_datasets(root: str | os.PathLike | None = None) -> list[Path]:
    """PTB-V dataset folders (those with a dataset.json) under the workspace's datasets folder, by name."""
    from ecgcore.dataset import DATASET_FILE  # the dataset module owns its file names (and imports numpy)

    return list_folders(DATASETS, DATASET_FILE, root)
