"""Release-side behaviours found by an adversarial review, each through the real doit command line."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import doit, snapshot

FRONTEND = Path("channels/prod/web/frontend")
PINNED = "images: {//web:frontend: 1.1.0, //web:logship: 1.1.0}\nvolumes: {//web:static: 1.0.0}\n"


def instruct(root: Path, version: str, text: str = PINNED, home: Path = FRONTEND) -> Path:
    path = root / home / f"{version}.yaml"
    path.write_text(text)
    return path


def tip(root: Path, home: Path = FRONTEND) -> str:
    return os.readlink(root / home / "tip")


def failure_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What doit said on failure, minus its up-to-date and executed task lines."""
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("-- ", ".  "))]


# ---------------------------------------------------------------- tip order


def test_tip_orders_a_non_pep440_version_by_its_numeric_parts(example):
    """`2.0.0-hotfix1` is not a PEP 440 version; it is still newer than 1.5.0."""
    for version in ("1.5.0", "2.0.0-hotfix1"):
        instruct(example, version)
    doit(example, check=True)
    assert tip(example) == "2.0.0-hotfix1"


def test_tip_orders_a_date_version_above_a_small_semver_one(example):
    """`2024-01-15` (not PEP 440) against `1.5.0`: 2024 > 1."""
    for version in ("1.5.0", "2024-01-15"):
        instruct(example, version)
    doit(example, check=True)
    assert tip(example) == "2024-01-15"


def test_tip_orders_odd_pep440_versions(example):
    for version in ("1.0.0-rc1", "2", "10.0", "1.0.0+build"):
        instruct(example, version)
    doit(example, check=True)
    assert tip(example) == "10.0"


def test_cleanup_keeps_the_numerically_newest_non_pep440_version(example):
    for version in ("1.5.0", "2.0.0-hotfix1"):
        instruct(example, version)
    doit(example, check=True)
    doit(example, "cleanup", "--keep", "1", check=True)
    assert (example / FRONTEND / "2.0.0-hotfix1" / "pod.json").is_file()
    assert not (example / FRONTEND / "1.5.0").exists()


# ---------------------------------------------------------------- something in the way


def test_an_empty_directory_at_the_pod_path_is_replaced_by_the_pod(example):
    """A leftover `mkdir` must not pass for a released pod: doit used to succeed without writing pod.json."""
    doit(example, check=True)
    instruct(example, "1.3.0")
    (example / FRONTEND / "1.3.0").mkdir()
    doit(example, check=True)
    assert (example / FRONTEND / "1.3.0" / "pod.json").is_file()
    assert tip(example) == "1.3.0"


def test_a_non_empty_directory_without_pod_json_at_the_pod_path_is_one_line_error(example):
    doit(example, check=True)
    instruct(example, "1.3.0")
    stray = example / FRONTEND / "1.3.0"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine\n")
    before = snapshot(example / FRONTEND)
    result = doit(example)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("channels/prod/web/frontend/1.3.0/: "), lines
    assert "Traceback" not in result.stderr
    assert snapshot(example / FRONTEND) == before  # nothing half-written, the stray folder untouched


def test_a_directory_without_sha512_at_the_image_path_is_one_line_error_at_the_image(example):
    doit(example, check=True)
    instruct(example, "1.3.0", "volumes: {//web:static: 1.0.0}\n")
    stray = example / "images" / "web" / "frontend" / "1.3.0"
    stray.mkdir()
    (stray / "image.aci").write_bytes(b"")
    result = doit(example)
    assert result.returncode != 0
    lines = failure_lines(result)
    assert len(lines) == 1, lines
    # the image task fails, naming the directory in the way (not the pod, later, saying "not built")
    assert lines[0].startswith("images/web/frontend/1.3.0/: ") and "sha512" in lines[0], lines
    assert not (example / FRONTEND / "1.3.0").exists()


def test_a_directory_at_the_tip_path_is_one_line_error_not_a_traceback(example):
    doit(example, check=True)
    os.unlink(example / FRONTEND / "tip")
    (example / FRONTEND / "tip").mkdir()
    instruct(example, "1.3.0")
    result = doit(example)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = failure_lines(result)
    assert lines and all(line.startswith("channels/prod/web/frontend/tip: ") for line in lines), lines
    assert (example / FRONTEND / "tip").is_dir()


# ---------------------------------------------------------------- yanked instructions and revisions


def test_a_yanked_instruction_naming_an_unknown_revision_blocks_nothing(example):
    """A yanked instruction builds nothing, so its revision is never looked up."""
    subprocess.run(["git", "init", "-q", str(example)], check=True)
    subprocess.run(["git", "-C", str(example), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(example), "-c", "user.email=r@example.com", "-c", "user.name=r", "commit", "-qm", "sources"],
        check=True,
    )
    head = subprocess.run(["git", "-C", str(example), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    for path in (example / "channels").rglob("*.yaml"):
        path.write_text(path.read_text().replace("9c35becf47fd", head))
    instruct(example, "1.3.0", "revision: deadbeef\nyanked: true\nvolumes: {//web:static: 1.0.0}\n")
    result = doit(example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tip(example) == "1.1.0"
    assert not (example / "images" / "web" / "frontend" / "1.3.0").exists()


# ---------------------------------------------------------------- tip in parallel runs

PG = Path("channels/prod/infra/db/pg")
PG_PINNED = "images: {//infra/db:pg: 1.10.0}\nvolumes: {//infra/db:pgdata: 1.0.0}\n"

def test_parallel_processes_move_tip_to_a_version_released_in_the_same_run(example):
    doit(example, check=True)
    instruct(example, "2.0.0", PG_PINNED, home=PG)
    doit(example, "-n", "2", check=True)
    assert tip(example, PG) == "2.0.0"


def test_parallel_threads_move_tip_past_a_lower_version_released_alongside(example):
    """1.9.5 is checked while 2.0.0 is still being assembled; 2.0.0 must still become tip.

    The test holds 2.0.0's pod lock until doit has decided about 1.9.5, so
    the order is certain without any timing.
    """
    doit(example, check=True)
    instruct(example, "1.9.5", PG_PINNED, home=PG)
    instruct(example, "2.0.0", PG_PINNED, home=PG)
    locks = example / ".podrelease" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(b"pod:prod/infra/db/pg/2.0.0").hexdigest()[:32] + ".lock"
    fd = os.open(locks / name, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    run = subprocess.Popen(
        [sys.executable, "-m", "doit", "-n", "2", "-P", "thread"], cwd=example, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    safety = threading.Timer(300, run.kill)  # only so a broken build cannot hang the suite
    safety.start()
    try:
        for line in run.stdout:
            if "release:prod/infra/db/pg/1.9.5" in line:
                break  # decided about 1.9.5 while 2.0.0 waits for its lock
        os.close(fd)
        run.stdout.read()
        assert run.wait() == 0
    finally:
        safety.cancel()
        run.kill()
    assert tip(example, PG) == "2.0.0"


def test_promoting_a_yanked_version_is_refused(example):
    doit(example, check=True)
    (example / "channels/staging/web/frontend/1.2.0.yaml").write_text(
        (example / "channels/staging/web/frontend/1.2.0.yaml").read_text() + "yanked: true\nreason: broken\n"
    )
    result = doit(example, "promote", "staging/web/frontend/1.2.0", "prod")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "yanked (broken)" in result.stderr
    assert not (example / "channels/prod/web/frontend/1.2.0.yaml").exists()


def test_pod_args_for_an_image_without_exec_are_one_line_error(example):
    build = example / "shipyard/infra/db/build.yaml"
    build.write_text(build.read_text().replace("exec: [/opt/pg/bin/pg-serve]", "user: \"0\"").replace("    images: [pg]", "    images: [pg]\n    args: [--fast]"))
    result = doit(example, "release:prod/infra/db/pg/1.9.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "whose app has no exec" in result.stderr.strip().splitlines()[-1]
    assert not (example / "channels/prod/infra/db/pg/1.9.0").exists()


def test_a_stray_directory_at_the_bundle_path_is_one_line_error(example):
    stray = example / "bundles/prod/infra/db/pg/1.9.0"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine\n")
    result = doit(example, "bundle:prod/infra/db/pg/1.9.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bundles/prod/infra/db/pg/1.9.0/: is in the way of the bundle")
    assert (stray / "notes.txt").read_text() == "mine\n"
