"""`python -m careplans worklist build` on a database of its own (SQLite): migrates, builds,
prints what it did; a bad date is refused with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARENET_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    return subprocess.run([sys.executable, "-m", "careplans", "worklist", "build", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_build_from_the_command_line(tmp_path: Path) -> None:
    done = run(tmp_path, "--as-of", "2026-09-01", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "worklist build (as of 2026-09-01): 0 patients considered, 0 items created" \
        in done.stdout
    bad = run(tmp_path, "--as-of", "1 September")
    assert bad.returncode == 2 and "is not a date" in bad.stderr
