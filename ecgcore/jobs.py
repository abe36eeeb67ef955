"""Background jobs: each pipeline command runs as its own process, recorded in a SQLite database in the workspace.

A job is ``python -m pipelines.NAME ARGS`` started in a new session (so it outlives the app that launched it) under
a small wrapper process that writes the command's exit code to ``exit_code`` in the job folder when it ends. The
command's stdout and stderr go to ``log.txt`` and its progress events (``ecgcore.progress``) to ``events.jsonl``
through ``$ECGLAB_EVENTS``. A job's status is derived, never guessed:

==============  ===========================================================================================
``running``     the wrapper process is alive (same pid *and* same start time, so a reused pid is not mistaken)
``cancelling``  alive, and a cancel was requested (SIGTERM sent to the process group; SIGKILL after a grace)
``finished``    exit code 0
``failed``      any other exit code (the last ``error:`` line of the log says why)
``cancelled``   a cancel was requested and the process is gone
``interrupted`` the process is gone without an exit code and nobody cancelled it (app host rebooted, killed...):
                resumable where the pipeline supports it
==============  ===========================================================================================

The runner has no Streamlit imports; the Jobs page, the tests and any script use it the same way::

    runner = JobRunner()
    job = runner.launch("generate_ptb_v", ["--synthetic", "--out", "workspace/datasets/demo", "-n", "20"])
    runner.refresh(); runner.get(job.id).status
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgcore.errors import JobError  # noqa: F401  (raised here; defined with the other user errors)
from ecgcore.progress import EVENTS_ENV
from ecgcore.workspace import JOBS, REPO_ROOT, subdir, workspace_root

DB_NAME = "jobs.sqlite"
LOG_FILE = "log.txt"
EVENTS_FILE = "events.jsonl"
EXIT_FILE = "exit_code"
COMMAND_FILE = "command.json"
KILL_AFTER_S = 10.0  # a cancelled job still alive after this long gets SIGKILL
ACTIVE = ("queued", "running", "cancelling")
TERMINAL = ("finished", "failed", "cancelled", "interrupted")



@dataclass(frozen=True)
class PipelineSpec:
    """A command the Jobs page may launch. ``resume``: how an interrupted run continues ("rerun": the same command
    picks up where it stopped; "flag": the same command plus ``--resume``; None: it starts over). ``verb`` and
    ``names`` make a job's name (:func:`job_name`): the verb, then the folder named by the ``names`` option."""

    name: str
    title: str
    resume: str | None = None
    verb: str = ""
    names: str = "--out"

    @property
    def module(self) -> str:
        return f"pipelines.{self.name}"

    def available(self) -> bool:
        """Whether the command exists in this checkout (other pipelines may be added later)."""
        return (REPO_ROOT / "pipelines" / f"{self.name}.py").is_file()


# Only these modules can be launched: a job is never an arbitrary command line.
PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec
    for spec in (
        PipelineSpec("generate_ptb_v", "Generate a PTB-V dataset", resume="rerun", verb="Generate PTB-V"),
        PipelineSpec("build_crops", "Build per-lead segmentation crops", verb="Build crops"),
        PipelineSpec("train_segmentation", "Train the segmentation U-Net", resume="flag", verb="Train segmentation"),
        PipelineSpec("build_classification_set", "Build the prototype-style classification set", resume="rerun",
                     verb="Build classification set"),
        PipelineSpec("train_classifier", "Train a classifier (image or signal)", resume="rerun",
                     verb="Train classifier"),
        PipelineSpec("evaluate", "Evaluate (segmentation IoU, digitisation SNR, classification)", verb="Evaluate",
                     names="--data"),
        PipelineSpec("score_dataset", "Score a dataset for curation", resume="rerun", verb="Score dataset", names="--data"),
    )
}


def _option(args: list[str], option: str) -> str | None:
    """The value of ``option`` in a command line (``--out X`` or ``--out=X``; the last one wins, as in argparse)."""
    value = None
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def job_name(pipeline: str, args: list[str]) -> str:
    """What a job makes, for the table and the selector: "Generate PTB-V: demo (50 samples)", "Train segmentation:
    seg-1", "Train classifier (signal): cls-1", "Evaluate digitization: test-set"; the pipeline's title when its
    command names nothing."""
    spec = PIPELINES.get(pipeline)
    if spec is None:
        return pipeline
    verb = spec.verb or spec.title
    if pipeline == "evaluate" and args and not args[0].startswith("-"):
        verb = f"{verb} {args[0]}"  # the sub-command: segmentation, digitization or classification
    if pipeline == "train_classifier":
        verb = f"{verb} ({_option(args, '--kind') or 'signal'})"
    value = _option(args, spec.names)
    if not value:
        return spec.title
    # --data may list several folders (comma-separated): each by its own name
    name = ", ".join(Path(part).name for part in value.split(",") if part)
    if pipeline == "generate_ptb_v":
        n = _option(args, "-n")
        if n:
            name += f" ({n} sample{'' if n == '1' else 's'})"
    return f"{verb}: {name}"


@dataclass
class Progress:
    """What a job's events file says so far."""

    done: int | None = None
    total: int | None = None
    message: str = ""
    rate_per_s: float | None = None  # recent progress rate
    eta_s: float | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {"step": int, "t": float, **values}
    logs: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass
class Job:
    id: int
    pipeline: str
    args: list[str]
    name: str
    status: str
    created: float
    started: float | None
    ended: float | None
    pid: int | None
    pid_created: float | None
    exit_code: int | None
    cancel_requested: float | None
    parent_id: int | None
    folder: Path

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", f"pipelines.{self.pipeline}", *self.args]

    @property
    def command(self) -> str:
        """The command line a person can paste into a terminal (from the repository root)."""
        return shlex.join(["python", "-m", f"pipelines.{self.pipeline}", *self.args])

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def events_path(self) -> Path:
        return self.folder / EVENTS_FILE

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def resumable(self) -> bool:
        spec = PIPELINES.get(self.pipeline)
        return bool(spec and spec.resume) and self.status in ("interrupted", "cancelled", "failed")

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    args TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    pid INTEGER,
    pid_created REAL,
    exit_code INTEGER,
    cancel_requested REAL,
    parent_id INTEGER,
    folder TEXT NOT NULL
)
"""


class JobRunner:
    """Launch, list, cancel and re-run pipeline jobs of one workspace."""

    def __init__(self, workspace: str | os.PathLike | None = None):
        self.workspace = Path(workspace).resolve() if workspace is not None else workspace_root()
        self.jobs_dir = subdir(JOBS, self.workspace)
        self.db_path = self.jobs_dir / DB_NAME
        with self._connect() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: Streamlit runs each session in its own thread, and WAL lets the
        # app read while another session (or a test) writes.
        db = sqlite3.connect(self.db_path, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    # --- queries -------------------------------------------------------------------------------------
    def _row_to_job(self, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["args"] = json.loads(values["args"])
        values["folder"] = Path(values["folder"])
        spec = PIPELINES.get(values["pipeline"])
        if spec is not None and values["name"] == spec.title:  # named before jobs were named by what they make
            values["name"] = job_name(values["pipeline"], values["args"])
        return Job(**values)

    def get(self, job_id: int) -> Job:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise JobError(f"there is no job {job_id}.")
        return self._row_to_job(row)

    def list(self, limit: int = 200) -> list[Job]:
        """Jobs, newest first, with their status brought up to date."""
        self.refresh()
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        return [self._row_to_job(r) for r in rows]

    # --- launching -----------------------------------------------------------------------------------
    def launch(self, pipeline: str, args: list[str], name: str = "", parent_id: int | None = None,
               threads: int | None = None) -> Job:
        """Start ``python -m pipelines.<pipeline> *args`` as a background job and record it.

        ``threads`` caps the numeric libraries' threads of the job (OMP/MKL/torch read these variables).
        """
        spec = PIPELINES.get(pipeline)
        if spec is None:
            raise JobError(f"unknown pipeline {pipeline!r}; the Jobs page can launch {', '.join(PIPELINES)}.")
        if not spec.available():
            raise JobError(f"pipelines/{pipeline}.py is not in this checkout yet, so it cannot be launched.")
        args = [str(a) for a in args]
        if any("\x00" in a for a in args):  # no process can take it: refuse here rather than fail in the wrapper
            raise JobError("an argument contains a NUL character; remove it and launch again.")
        out = output_of(args)
        if out is not None:
            self.refresh()
            with self._connect() as db:
                marks = ",".join("?" * len(ACTIVE))
                rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks})", ACTIVE).fetchall()
            for other in map(self._row_to_job, rows):
                if output_of(other.args) == out:
                    raise JobError(f"job {other.id} is still writing to {out}; wait for it or cancel it first.")
        now = time.time()
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO jobs (pipeline, args, name, status, created, parent_id, folder) VALUES (?,?,?,?,?,?,?)",
                (pipeline, json.dumps(args), name or job_name(pipeline, args), "queued", now, parent_id, ""),
            )
            job_id = int(cur.lastrowid)
            folder = self.jobs_dir / f"{job_id:06d}"
            db.execute("UPDATE jobs SET folder = ? WHERE id = ?", (str(folder), job_id))
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", spec.module, *args]
        (folder / COMMAND_FILE).write_text(json.dumps({"argv": argv, "cwd": str(REPO_ROOT)}, indent=1))
        env = dict(os.environ)
        env[EVENTS_ENV] = str(folder / EVENTS_FILE)
        env["PYTHONUNBUFFERED"] = "1"
        env["ECGLAB_JOB_ID"] = str(job_id)
        env["ECGLAB_WORKSPACE"] = str(self.workspace)
        if threads:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[var] = str(int(threads))
        with open(folder / LOG_FILE, "ab") as log:
            log.write(f"$ {shlex.join(['python', '-m', spec.module, *args])}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ecgcore.jobs", "--wrap", str(folder)],
                    cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: outlives the app, and cancel reaches all of it
                    close_fds=True,
                )
            except OSError as exc:
                self._update(job_id, status="failed", ended=time.time())
                raise JobError(f"could not start the job ({exc.strerror or exc}).") from exc
        created = _process_create_time(proc.pid)
        self._update(job_id, status="running", started=time.time(), pid=proc.pid, pid_created=created)
        _LAUNCHED[proc.pid] = proc  # keep the handle so the child is reaped (no zombie) while the app lives
        return self.get(job_id)

    def rerun(self, job_id: int) -> Job:
        """The same command again, as a new job."""
        job = self.get(job_id)
        if job.active:
            raise JobError(f"job {job.id} is still {job.status}; cancel it or wait before re-running it.")
        return self.launch(job.pipeline, job.args, name=job.name, parent_id=job.id)

    def resume(self, job_id: int) -> Job:
        """Continue an interrupted, cancelled or failed job where its pipeline supports it."""
        job = self.get(job_id)
        spec = PIPELINES.get(job.pipeline)
        if job.active:
            raise JobError(f"job {job.id} is still {job.status}.")
        if spec is None or spec.resume is None:
            raise JobError(f"{job.pipeline} cannot resume; re-run it to start over.")
        args = list(job.args)
        if spec.resume == "flag" and "--resume" not in args:
            args.append("--resume")
        return self.launch(job.pipeline, args, name=job.name, parent_id=job.id)

    def cancel(self, job_id: int) -> Job:
        """Ask a running job to stop: SIGTERM to its whole process group (SIGKILL follows if it lingers)."""
        job = self.get(job_id)
        if not job.active:
            return job
        self._update(job.id, cancel_requested=time.time(), status="cancelling")
        if _alive(job.pid, job.pid_created):
            _signal_group(job.pid, signal.SIGTERM)
        self.refresh()
        return self.get(job.id)

    def wait(self, job_id: int, timeout: float = 60.0, poll: float = 0.2) -> Job:
        """Block until the job ends (or ``timeout`` seconds pass); return it."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            job = self.get(job_id)
            if not job.active or time.monotonic() >= deadline:
                return job
            time.sleep(poll)

    # --- status --------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring the status of every active job up to date from process liveness and exit-code files."""
        with self._connect() as db:
            marks = ",".join("?" * len(ACTIVE))
            rows = db.execute(f"SELECT * FROM jobs WHERE status IN ({marks})", ACTIVE).fetchall()
        for row in rows:
            job = self._row_to_job(row)
            alive = _alive(job.pid, job.pid_created)
            # Liveness first, then the file: the wrapper writes the file before it exits, so a dead process
            # without the file really ended without an exit code.
            code = read_exit_code(job.folder)
            now = time.time()
            if code is not None:
                status = "finished" if code == 0 else ("cancelled" if job.cancel_requested else "failed")
                self._update(job.id, status=status, exit_code=code, ended=job.ended or now)
            elif not alive:
                if job.status == "queued" and job.pid is None and now - job.created < 30:
                    continue  # being launched by another session right now
                status = "cancelled" if job.cancel_requested else "interrupted"
                self._update(job.id, status=status, ended=job.ended or now)
            elif job.cancel_requested and now - job.cancel_requested > KILL_AFTER_S:
                _signal_group(job.pid, signal.SIGKILL)

    def _update(self, job_id: int, **values: Any) -> None:
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), int(job_id)))

    # --- what a job reports --------------------------------------------------------------------------
    def progress(self, job: Job) -> Progress:
        return read_progress(job.events_path)

    def log_tail(self, job: Job, max_lines: int = 40) -> str:
        return tail_text(job.log_path, max_lines)

    def error_line(self, job: Job) -> str:
        """The reason a job failed: its last ``error:`` line, else the last line of its log."""
        lines = tail_text(job.log_path, 200).splitlines()
        for line in reversed(lines):
            if line.startswith("error:"):
                return line[len("error:"):].strip()
        return next((line for line in reversed(lines) if line.strip()), "")


_LAUNCHED: dict[int, subprocess.Popen] = {}


def output_of(args: list[str]) -> str | None:
    """The resolved ``--out`` folder of a command line, if it has one (two jobs must not write to the same one)."""
    for i, arg in enumerate(args):
        if arg == "--out" and i + 1 < len(args):
            return str(Path(args[i + 1]).resolve())
        if arg.startswith("--out="):
            return str(Path(arg.split("=", 1)[1]).resolve())
    return None


# Options through which a pipeline writes where it is told (--out everywhere; --to of the segmentation export).
# argparse also accepts unambiguous abbreviations, so '--o' and '--ou' are '--out'.
WRITE_OPTIONS = ("--o", "--ou", "--out", "--to")


def written_paths(args: list[str]) -> list[Path]:
    """The resolved paths a command line tells its pipeline to write to (jobs run from the repository root)."""
    paths = []
    for i, arg in enumerate(args):
        option, sep, value = arg.partition("=")
        if option not in WRITE_OPTIONS:
            continue
        if not sep:
            if i + 1 >= len(args):
                continue
            value = args[i + 1]
        path = Path(value)
        paths.append((path if path.is_absolute() else REPO_ROOT / path).resolve())
    return paths


def confine_outputs(args: list[str], workspace: str | os.PathLike) -> None:
    """Refuse a command line that would write outside ``workspace`` (JobError, one sentence).

    The Jobs page checks the final command, extra arguments included, so that a typed ``--out /elsewhere`` cannot
    override the form's confined name.
    """
    base = Path(workspace).resolve()
    if any("\x00" in a for a in args):
        raise JobError("an argument contains a NUL character; remove it and launch again.")
    for path in written_paths(args):
        if path != base and base not in path.parents:
            raise JobError(f"the job would write to {path}, outside the workspace {base}; name the output in the "
                           "form instead of passing a path.")


def read_exit_code(folder: Path) -> int | None:
    try:
        return int((Path(folder) / EXIT_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _process_create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _alive(pid: int | None, created: float | None) -> bool:
    """Whether process ``pid`` is the one we started (same start time) and has not exited."""
    import psutil

    if not pid:
        return False
    proc = _LAUNCHED.get(pid)
    if proc is not None and proc.poll() is not None:  # our child and it ended: reaped now
        _LAUNCHED.pop(pid, None)
        return False
    try:
        p = psutil.Process(pid)
        if created is not None and abs(p.create_time() - created) > 1.0:
            return False  # the pid was reused by another process
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _signal_group(pid: int | None, sig: int) -> None:
    if not pid:
        return
    try:
        os.killpg(pid, sig)  # the wrapper leads its own session, so its pid is the group id
    except (ProcessLookupError, PermissionError):
        pass


# --- events and logs ----------------------------------------------------------------------------------

_EVENT_CACHE: dict[str, tuple[int, int, list[dict]]] = {}  # path -> (inode, bytes consumed, parsed events)


def read_events(path: str | os.PathLike) -> list[dict]:
    """All events of an events file; read incrementally (only new complete lines are parsed on each call)."""
    path = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    inode, offset, events = _EVENT_CACHE.get(path, (st.st_ino, 0, []))
    if inode != st.st_ino or st.st_size < offset:  # replaced or truncated: start over
        offset, events = 0, []
    if st.st_size > offset:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(st.st_size - offset)
        end = chunk.rfind(b"\n") + 1  # a line still being written is left for the next call
        for line in chunk[:end].splitlines():
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(event, dict):
                events.append(event)
        offset += end
        events = list(events)
    _EVENT_CACHE[path] = (st.st_ino, offset, events)
    return events


def read_progress(path: str | os.PathLike, rate_window_s: float = 120.0) -> Progress:
    """Progress, rate, ETA, metrics and log messages from an events file (ecgcore.progress's format)."""
    events = read_events(path)
    out = Progress()
    bar: list[dict] = []  # progress events of the current bar (a new total or a count going down starts a new one)
    for e in events:
        kind = e.get("kind")
        if kind == "progress":
            if bar and (e.get("total") != bar[-1].get("total") or (e.get("done") or 0) < (bar[-1].get("done") or 0)):
                bar = []
            bar.append(e)
        elif kind == "metrics" and isinstance(e.get("values"), dict):
            out.metrics.append({"step": e.get("step"), "t": e.get("t"), **e["values"]})
        elif kind == "log":
            out.logs.append(str(e.get("message", "")))
    if not bar:
        return out
    last = bar[-1]
    out.done, out.total, out.message = last.get("done"), last.get("total"), str(last.get("message") or "")
    # The rate ignores a bar's first two events: the start (0) and, on a resume, the jump over finished work.
    timed = bar[2:] if len(bar) > 3 else bar[1:]
    recent = [e for e in timed if e["t"] >= last["t"] - rate_window_s] or timed
    if len(recent) >= 2 and recent[-1]["t"] > recent[0]["t"]:
        rate = ((recent[-1].get("done") or 0) - (recent[0].get("done") or 0)) / (recent[-1]["t"] - recent[0]["t"])
        if rate > 0:
            out.rate_per_s = rate
            if out.total and out.done is not None:
                out.eta_s = max(0.0, (out.total - out.done) / rate)
    return out


def tail_text(path: str | os.PathLike, max_lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of a log, with progress-bar redraws (carriage returns) collapsed to their final state."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    lines = [line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r") for line in text.split("\n")]
    if size > max_bytes:
        lines = lines[1:]  # the first line is probably cut
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[-max_lines:])


def format_duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s' or '' (for tables)."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


# --- the wrapper process ----------------------------------------------------------------------------------


def _wrap(folder: Path) -> int:
    """Run the job's command, then write its exit code (atomically) to the job folder."""
    spec = json.loads((folder / COMMAND_FILE).read_text())
    child = subprocess.Popen(spec["argv"], cwd=spec["cwd"], stdin=subprocess.DEVNULL)

    def forward(signum, _frame):
        # A cancel signals the whole group; forwarding covers a signal sent to the wrapper alone.
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # closing the app's terminal must not stop the job
    code = child.wait()
    tmp = folder / f".{EXIT_FILE}.tmp"
    tmp.write_text(f"{code}\n")
    os.replace(tmp, folder / EXIT_FILE)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--wrap":
        raise SystemExit(_wrap(Path(sys.argv[2])))
    print("usage: python -m ecgcore.jobs --wrap JOB_FOLDER  (used by JobRunner; launch jobs from the Jobs page)",
          file=sys.stderr)
    raise SystemExit(2)
