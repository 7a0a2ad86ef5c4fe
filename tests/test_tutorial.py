"""docs/tutorial.md runs as written: its shell blocks, in order, print the output it shows.

Every ```sh block is run in one shell, in a fresh folder; the plain ```
block after it is what the tutorial says it prints. Each of its lines must
appear in that output, except lines naming what differs from run to run
(a commit, a sha512, an elided `...`). Blocks that need podman or a
running pod (ops-onboard, curl) are left out: tests/deploy covers them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
VARYING = re.compile(r"[0-9a-f]{12,}|\.\.\.|…")
NEEDS_A_HOST = ("ops-onboard", "curl ")
MARK = "@@block@@"


def steps() -> list[tuple[str, list[str]]]:
    """(shell text, expected lines) for each runnable ```sh block."""
    found: list[tuple[str, list[str]]] = []
    for match in BLOCK.finditer(TUTORIAL.read_text()):
        kind, body = match.group(1), match.group(2)
        if kind == "sh":
            found.append((body, []))
        elif kind == "" and found and not found[-1][1]:
            found[-1] = (found[-1][0], body.splitlines())
    return [(body, expected) for body, expected in found if not any(word in body for word in NEEDS_A_HOST)]


@pytest.mark.skipif(shutil.which("git") is None or not os.access("/bin/busybox", os.X_OK), reason="needs git and busybox")
def test_the_tutorial_prints_what_it_shows(tmp_path):
    runnable = steps()
    assert len(runnable) >= 8
    script = "".join(f"echo {MARK}\n{body}" for body, _ in runnable)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    outputs = (result.stdout + result.stderr).split(MARK + "\n")[1:]
    # stderr is not interleaved with the marks: look for each block's lines in its output, or in stderr
    for (body, expected), output in zip(runnable, outputs, strict=True):
        for line in expected:
            if not line.strip() or VARYING.search(line):
                continue
            assert line in output.splitlines() or line in result.stderr.splitlines(), f"{body}\nprinted:\n{output}\nnot: {line!r}"
    assert "Traceback" not in result.stdout + result.stderr
