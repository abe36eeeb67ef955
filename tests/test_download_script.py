"""download_datasets.sh: explains itself offline, and verification catches a damaged file."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "download_datasets.sh"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_offline_gives_a_clear_sentence(tmp_path):
    # port 9 on loopback refuses at once: the same path as a machine with no network
    result = run(str(tmp_path / "ptb-xl"), env={"PTBXL_BASE_URL": "http://127.0.0.1:9/ptb-xl"})
    assert result.returncode == 1
    assert "seems to be offline" in result.stderr and "synthetic signals" in result.stderr
    assert not (tmp_path / "ptb-xl").exists()


def test_verify_accepts_a_complete_copy_and_names_a_damaged_one(tmp_path):
    folder = tmp_path / "ptb-xl"
    (folder / "records100").mkdir(parents=True)
    files = {"ptbxl_database.csv": b"ecg_id\n1\n", "records100/00001_lr.dat": b"\x00\x01" * 100}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items())
    (folder / "SHA256SUMS.txt").write_text(sums)
    ok = run("--verify", str(folder))
    assert ok.returncode == 0 and "complete and verified" in ok.stdout
    (folder / "records100/00001_lr.dat").write_bytes(b"damaged")
    bad = run("--verify", str(folder))
    assert bad.returncode == 1 and "do not match SHA256SUMS.txt" in bad.stderr
