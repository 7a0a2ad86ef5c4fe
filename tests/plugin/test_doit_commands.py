"""doit's own list, info and help never end in a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import doit


def first_line_then_close(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `doit args`, read one line of its output, then close the pipe (as `| head -1` does)."""
    process = subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    return subprocess.CompletedProcess(process.args, process.wait(timeout=120), line.decode(), stderr)


def test_doit_list_into_a_closed_pipe_exits_0_without_a_traceback(released_example):
    result = first_line_then_close(released_example, "list")
    assert result.stdout.startswith(("R ", "U "))
    assert (result.returncode, result.stderr) == (0, "")


def test_doit_help_into_a_closed_pipe_exits_0_without_a_traceback(released_example):
    result = first_line_then_close(released_example, "help")
    assert result.stdout.startswith("doit")
    assert (result.returncode, result.stderr) == (0, "")


def test_doit_info_of_an_unknown_task_is_one_line_with_the_closest_names(released_example):
    result = doit(released_example, "info", "release:prod/web/frontend/1.1.1")
    assert result.returncode == 3
    assert result.stderr == (
        "doit info: no task 'release:prod/web/frontend/1.1.1'; did you mean release:prod/web/frontend/1.1.0"
        " or bundle:prod/web/frontend/1.1.0 or pod:prod/web/frontend/1.1.0?\n"
    )


def test_doit_info_of_a_known_task_still_shows_it(released_example):
    result = doit(released_example, "info", "release:prod/web/frontend/1.1.0", check=True)
    assert "release:prod/web/frontend/1.1.0" in result.stdout


def test_doit_with_an_unknown_task_is_one_line_with_the_closest_names(released_example):
    result = doit(released_example, "relase:prod/web/frontend/1.1.0")
    assert result.returncode == 3
    assert result.stderr.startswith("ERROR: no task or command 'relase:prod/web/frontend/1.1.0'; did you mean release:prod/web/frontend/1.1.0")
    assert "Traceback" not in result.stderr
