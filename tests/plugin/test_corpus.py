"""The hostile and malformed input corpus, run through the real doit command.

Each folder of tests/corpus/ is one case: `overlay/` is copied over a fresh
copy of the example release root, `remove:` in `case.yaml` deletes example
files, and an optional `generate.py` makes what a repository should not hold
(huge files, fifos, symlinks leading out of the tree) with `generate(root)`.
`case.yaml` lists the expected error lines by prefix, in order: one line per
bad file, `path:line: message`.

Every case must fail with exactly those lines: a non-zero exit, no
traceback, nothing written (not even doit's state file), within a memory
limit and a timeout. The cases run in a few parallel workers so the corpus
stays quick; each case still gets its own release root and its own doit.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from podrelease.core.names import check_version

from corpuscases import CASES, CORPUS, Case, prepare

MEMORY_LIMIT = 1 << 30  # address space of each doit process
TIMEOUT = 60  # seconds for each doit process
MAX_LINE = 400  # a clear error line quotes values, it does not dump them
# what must never reach a terminal raw: C0 and C1 controls, line separators, bidi overrides and isolates
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
WORKERS = 4


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Outcome:
    before: dict
    after: dict
    runs: tuple[Run, ...]


def snapshot(root: Path) -> dict[str, tuple]:
    """Like conftest.snapshot, but a fifo or device is recorded, never opened."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            info = full.lstat()
            rel = str(full.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                state[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = ("dir", oct(stat.S_IMODE(info.st_mode)))
            elif stat.S_ISREG(info.st_mode):
                state[rel] = ("file", oct(stat.S_IMODE(info.st_mode)), hashlib.sha256(full.read_bytes()).hexdigest())
            else:
                state[rel] = ("special", oct(info.st_mode))
    return state


def bounded_doit(root: Path, *args: str) -> Run:
    """The real doit command line, in a limited address space, with a timeout."""
    command = [sys.executable, "-m", "doit", *args]
    prlimit = shutil.which("prlimit")
    if prlimit:
        command = [prlimit, f"--as={MEMORY_LIMIT}", "--", *command]
    start = time.monotonic()
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return Run(tuple(args), result.returncode, result.stdout, result.stderr, time.monotonic() - start)


def run_case(case: Case, root: Path) -> Outcome:
    prepare(case, root)
    before = snapshot(root)
    runs = [bounded_doit(root)]
    if case.also_list:
        runs.append(bounded_doit(root, "list"))
    return Outcome(before, snapshot(root), tuple(runs))


def selected_cases(session: pytest.Session) -> list[str]:
    """The corpus cases this pytest run will check (all of them, or what -k left)."""
    return [
        item.callspec.params["name"]
        for item in session.items
        if getattr(item, "originalname", None) == "test_bad_input_gives_one_line_per_bad_file_and_writes_nothing"
    ]


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Run every selected case once, a few at a time; each test then checks one."""
    names = selected_cases(request.session)
    base = tmp_path_factory.mktemp("corpus")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(run_case, Case.read(name), base / name) for name in names}
        return {name: future.result() for name, future in futures.items()}


def test_the_corpus_covers_instructions_build_files_and_paths():
    kinds = {name.split("-")[0] for name in CASES}
    assert len(CASES) >= 80
    assert kinds == {"instr", "build", "path"}
    generated = [name for name in CASES if (CORPUS / name / "generate.py").is_file()]
    assert len(generated) <= len(CASES) // 6


@pytest.mark.parametrize("version", ["1..0", "1.0.0+build.5", "RC1", "26.032.1", "v2_beta-3"])
def test_odd_versions_the_spec_allows_are_not_in_the_corpus(version):
    """`[A-Za-z0-9][A-Za-z0-9._+-]*`, never `tip`: `1..0` is odd but valid (it is one path segment)."""
    assert check_version(version) == version


@pytest.mark.parametrize("version", ["tip", "-1", ".1", "+1", "1.0/../x", "1 0", "", "é1"])
def test_versions_the_spec_refuses(version):
    with pytest.raises(ValueError):
        check_version(version)


@pytest.mark.parametrize("name", CASES, ids=CASES)
def test_bad_input_gives_one_line_per_bad_file_and_writes_nothing(name, outcomes):
    case = Case.read(name)
    outcome = outcomes[name]
    for run in outcome.runs:
        shown = f"doit {' '.join(run.args)}".strip()
        assert run.returncode != 0, f"{shown} succeeded:\n{run.stdout}"
        assert "Traceback" not in run.stdout + run.stderr, run.stderr[-3000:]
        assert run.stdout == "", f"{shown} started working:\n{run.stdout[:3000]}"
        lines = run.stderr.splitlines()
        assert len(lines) == len(case.expect), f"{shown}:\n{run.stderr[:3000]}"
        for line, expected in zip(lines, case.expect, strict=True):
            assert line.startswith(expected), f"{shown}: {line[:MAX_LINE]!r} does not start with {expected!r}"
            assert len(line) <= MAX_LINE, f"{shown}: a {len(line)}-character error line"
            assert not RAW_CONTROL.search(line), f"{shown}: a raw control character in {line[:MAX_LINE]!r}"
        assert run.seconds < TIMEOUT
    assert outcome.after == outcome.before, "doit wrote something"
