"""Writing instructions into a copy of the example root and reading its tips (shared by test files)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

FRONTEND = Path("channels/prod/web/frontend")
PINNED = "images: {//web:frontend: 1.1.0, //web:logship: 1.1.0}\nvolumes: {//web:static: 1.0.0}\n"

PG = Path("channels/prod/infra/db/pg")
PG_PINNED = "images: {//infra/db:pg: 1.10.0}\nvolumes: {//infra/db:pgdata: 1.0.0}\n"


def instruct(root: Path, version: str, text: str = PINNED, home: Path = FRONTEND) -> Path:
    path = root / home / f"{version}.yaml"
    path.write_text(text)
    return path


def tip(root: Path, home: Path = FRONTEND) -> str:
    return os.readlink(root / home / "tip")


SUMMARY = re.compile(r"\d+ images? built, \d+ pods? assembled, \d+ tips? moved")


def failure_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What doit said on failure, minus its up-to-date and executed task lines, tip moves and summary."""
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("-- ", ".  ", "tip ")) and not SUMMARY.match(line)]
