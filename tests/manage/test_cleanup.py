"""`doit cleanup` through the real doit command line, and its pure decision."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from podrelease.core import fsops, locks
from podrelease.core.names import Label
from podrelease.manage.cleanup import IMAGE, VOLUME, Artifact, PodVersions, Protect, Survey, decide

from conftest import doit, executed, snapshot

FRONTEND = Label("web", "frontend")
PG = Label("infra/db", "pg")


@pytest.fixture
def root(released_example: Path, tmp_path: Path) -> Path:
    """A private copy of the released example."""
    copy = tmp_path / "root"
    shutil.copytree(released_example, copy, symlinks=True)
    return copy


def cleanup(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = doit(root, "cleanup", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def released_versions(root: Path) -> set[str]:
    return {str(p.parent.relative_to(root / "channels")) for p in (root / "channels").rglob("pod.json")}


def instructions(root: Path) -> set[str]:
    return {str(p.relative_to(root / "channels")) for p in (root / "channels").rglob("*.yaml")}


def images(root: Path) -> set[str]:
    return {str(p.parent.relative_to(root / "images")) for p in (root / "images").rglob("sha512")}


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{fsops.TMP_PREFIX}*")]


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------- what goes, what stays


def test_keep_one_removes_older_released_versions(root):
    result = cleanup(root, "--keep", "1")
    assert result.returncode == 0, result.stderr
    assert released_versions(root) == {
        "staging/web/frontend/1.2.0", "prod/web/frontend/1.1.0",
        "prod/infra/db/pg/1.10.0", "staging/infra/db/pg/1.10.0",
    }


def test_instructions_of_removed_versions_are_removed(root):
    cleanup(root, "--keep", "1")
    assert instructions(root) == {
        "staging/web/frontend/1.2.0.yaml", "prod/web/frontend/1.1.0.yaml",
        "prod/infra/db/pg/1.10.0.yaml", "staging/infra/db/pg/1.10.0.yaml",
    }


def test_images_no_remaining_pod_refers_to_are_removed(root):
    cleanup(root, "--keep", "1")
    assert images(root) == {
        "base/busybox/1.0.0", "web/frontend/1.1.0", "web/logship/1.1.0", "web/logship/1.2.0", "infra/db/pg/1.10.0",
    }


def test_cleanup_prints_each_removal_and_a_summary(root):
    result = cleanup(root, "--keep", "1")
    assert result.stdout.splitlines() == [
        "removed channels/prod/infra/db/pg/1.9.0.yaml",
        "removed channels/prod/infra/db/pg/1.9.0/",
        "removed channels/staging/web/frontend/1.0.0.yaml",
        "removed channels/staging/web/frontend/1.0.0/",
        "removed images/infra/db/pg/1.9.0/",
        "removed images/web/frontend/1.0.0/",
        "removed images/web/logship/1.0.0/",
        "cleanup: removed 2 pod versions, 3 images, 0 volumes; kept 4 pod versions",
    ]


def test_keep_two_removes_nothing_from_the_example(root):
    before = snapshot(root / "channels"), snapshot(root / "images")
    assert cleanup(root, "--keep", "2").returncode == 0
    assert (snapshot(root / "channels"), snapshot(root / "images")) == before


def test_verify_is_clean_after_cleanup(root):
    cleanup(root, "--keep", "1")
    result = doit(root, "verify")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        "verify: 0 errors, 0 warnings (checked 5 images, 4 pods, 4 tips, 4 instructions)"
    ]


def test_doit_after_cleanup_releases_nothing_again(root):
    cleanup(root, "--keep", "1")
    result = doit(root, check=True)
    assert executed(result) == []


def test_no_temporary_is_left_behind(root):
    cleanup(root, "--keep", "1")
    assert leftovers(root) == []


# ---------------------------------------------------------------- what is never removed


def test_the_tip_is_never_removed(root):
    pg = root / "channels/prod/infra/db/pg"
    (pg / "1.10.0.yaml").write_text((pg / "1.10.0.yaml").read_text() + "yanked: true\n")
    doit(root, check=True)
    assert os.readlink(pg / "tip") == "1.9.0"
    cleanup(root, "--keep", "1")
    assert {"prod/infra/db/pg/1.9.0", "prod/infra/db/pg/1.10.0"} <= released_versions(root)
    assert doit(root, "verify").returncode == 0


def test_protect_with_a_full_name_keeps_that_version(root):
    cleanup(root, "--keep", "1", "--protect", "staging/web/frontend/1.0.0")
    assert "staging/web/frontend/1.0.0" in released_versions(root)
    assert "prod/infra/db/pg/1.9.0" not in released_versions(root)
    assert {"web/frontend/1.0.0", "web/logship/1.0.0"} <= images(root)


def test_protect_with_a_bare_version_keeps_it_in_every_channel_and_pod(root):
    cleanup(root, "--keep", "0", "--protect", "1.10.0")
    assert released_versions(root) == {
        "staging/web/frontend/1.2.0", "prod/web/frontend/1.1.0",  # tips
        "prod/infra/db/pg/1.10.0", "staging/infra/db/pg/1.10.0",  # tips and protected
    }


def test_protect_is_repeatable(root):
    cleanup(root, "--keep", "1", "--protect", "1.9.0", "--protect", "staging/web/frontend/1.0.0")
    assert {"prod/infra/db/pg/1.9.0", "staging/web/frontend/1.0.0"} <= released_versions(root)


def test_protect_naming_no_released_version_is_refused(root):
    before = snapshot(root)
    result = cleanup(root, "--keep", "1", "--protect", "staging/web/frontend/1.0.1")
    assert result.returncode == 1
    assert result.stderr == "doit cleanup: --protect staging/web/frontend/1.0.1 names no released pod version\n"
    assert snapshot(root) == before


def test_image_a_pending_instruction_needs_is_kept(root):
    # not released yet: it will need frontend and logship 1.0.0, which only staging 1.0.0 links to now
    (root / "channels/prod/web/frontend/1.0.0.yaml").write_text("volumes: {//web:static: 1.0.0}\n")
    cleanup(root, "--keep", "1")
    assert "staging/web/frontend/1.0.0" not in released_versions(root)
    assert {"web/frontend/1.0.0", "web/logship/1.0.0"} <= images(root)
    result = doit(root, "release:prod/web/frontend/1.0.0", check=True)
    assert not [t for t in executed(result) if t.startswith("image:")]


def test_base_image_a_rule_starts_from_is_kept(root):
    build = root / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace("images:\n", "images:\n  tools:\n    from: frontend@1.0.0\n", 1))
    cleanup(root, "--keep", "1")
    assert "staging/web/frontend/1.0.0" not in released_versions(root)
    assert "web/frontend/1.0.0" in images(root)
    assert "web/logship/1.0.0" not in images(root)


def test_image_linked_from_another_channel_is_kept(root):
    # prod 1.1.0 and staging 1.2.0 share frontend 1.1.0; removing neither pod's
    # version, but removing staging's older one must not take shared images along
    cleanup(root, "--keep", "1")
    assert "web/frontend/1.1.0" in images(root)


# ---------------------------------------------------------------- volumes


def test_unreferenced_volumes_are_kept_without_the_flag(root):
    shutil.copytree(root / "volumes/web/static/1.0.0", root / "volumes/web/static/0.9.0")
    result = cleanup(root, "--keep", "1")
    assert (root / "volumes/web/static/0.9.0").is_dir()
    assert result.stdout.splitlines()[-1].endswith("; 1 volume no pod refers to kept (--volumes removes them)")


def test_volumes_flag_removes_unreferenced_volumes_only(root):
    shutil.copytree(root / "volumes/web/static/1.0.0", root / "volumes/web/static/0.9.0")
    cleanup(root, "--keep", "1", "--volumes")
    assert not (root / "volumes/web/static/0.9.0").exists()
    assert (root / "volumes/web/static/1.0.0").is_dir()
    assert (root / "volumes/infra/db/pgdata/1.0.0").is_dir()
    assert doit(root, "verify").returncode == 0


# ---------------------------------------------------------------- dry run and refusals


def test_dry_run_lists_what_would_go_and_changes_nothing(root):
    before = snapshot(root)
    result = cleanup(root, "--keep", "1", "--dry-run")
    assert result.returncode == 0
    assert snapshot(root) == before
    lines = result.stdout.splitlines()
    assert "would remove channels/staging/web/frontend/1.0.0/" in lines
    assert "would remove images/web/frontend/1.0.0/" in lines
    assert lines[-1] == "cleanup: would remove 2 pod versions, 3 images, 0 volumes; kept 4 pod versions (dry run: nothing changed)"


def test_keep_is_required(root):
    result = cleanup(root)
    assert result.returncode == 3
    assert result.stderr == "doit cleanup: --keep N is required (how many released versions of each pod to keep)\n"


def test_a_root_that_does_not_load_is_refused(root):
    (root / "channels/prod/web/frontend/1.5.0.yaml").write_text("imagez: {}\n")
    before = snapshot(root)
    result = cleanup(root, "--keep", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("channels/prod/web/frontend/1.5.0.yaml:1: unknown key 'imagez'")
    assert snapshot(root) == before


# ---------------------------------------------------------------- crash safety and locks


def test_leftover_of_a_killed_cleanup_is_swept_and_keeps_nothing_alive(root):
    # killed after renaming staging 1.0.0 away, before deleting it
    home = root / "channels/staging/web/frontend"
    (home / "1.0.0.yaml").unlink()
    os.rename(home / "1.0.0", home / f"{fsops.TMP_PREFIX}1.0.0-{dead_pid()}-0badcafe")
    cleanup(root, "--keep", "1")
    assert leftovers(root) == []
    assert "web/frontend/1.0.0" not in images(root)
    assert doit(root, "verify").returncode == 0


def test_pod_directory_whose_instruction_is_gone_is_still_cleaned_up(root):
    # killed between removing the instruction and the pod directory
    (root / "channels/staging/web/frontend/1.0.0.yaml").unlink()
    cleanup(root, "--keep", "1")
    assert "staging/web/frontend/1.0.0" not in released_versions(root)


def test_cleanup_waits_for_a_release_holding_the_pod_lock(root):
    held, release = threading.Event(), threading.Event()

    def hold():
        with locks.holding(root, "pod:staging/web/frontend/1.0.0"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    process = subprocess.Popen([sys.executable, "-m", "doit", "cleanup", "--keep", "1"], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert process.poll() is None
        assert (root / "channels/staging/web/frontend/1.0.0/pod.json").is_file()
    finally:
        release.set()
        holder.join()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "staging/web/frontend/1.0.0" not in released_versions(root)


# ---------------------------------------------------------------- the decision (pure)


def survey_of(versions: dict[tuple[str, Label], tuple[list[str], str | None]], refs=None, artifacts=(), needed=()) -> Survey:
    return Survey(
        pods=[PodVersions(channel, pod, tuple(v), tip) for (channel, pod), (v, tip) in versions.items()],
        refs=refs or {},
        artifacts=set(artifacts),
        needed=set(needed),
    )


def removed(decision) -> list[str]:
    return [str(r) for r in decision.pods]


def test_decide_orders_versions_numerically():
    found = survey_of({("prod", PG): (["1.9.0", "1.10.0", "1.8.0"], "1.10.0")})
    assert removed(decide(found, keep=2)) == ["prod/infra/db/pg/1.8.0"]


def test_decide_keeps_the_tip_beyond_n():
    found = survey_of({("prod", PG): (["1.8.0", "1.9.0", "1.10.0"], "1.8.0")})
    assert removed(decide(found, keep=1)) == ["prod/infra/db/pg/1.9.0"]


def test_decide_keeps_protected_versions():
    found = survey_of({("prod", PG): (["1.8.0", "1.9.0", "1.10.0"], "1.10.0"), ("qa", PG): (["1.8.0", "1.10.0"], "1.10.0")})
    protect = [Protect("1.8.0", "prod", PG)]
    assert removed(decide(found, keep=1, protect=protect)) == ["prod/infra/db/pg/1.9.0", "qa/infra/db/pg/1.8.0"]


def test_decide_removes_images_only_the_removed_pods_referred_to():
    old, shared, orphan = (Artifact(IMAGE, PG, v) for v in ("1.8.0", "1.9.0", "0.1.0"))
    found = survey_of(
        {("prod", PG): (["1.8.0", "1.9.0"], "1.9.0")},
        refs={"channels/prod/infra/db/pg/1.8.0": frozenset({old, shared}), "channels/prod/infra/db/pg/1.9.0": frozenset({shared})},
        artifacts={old, shared, orphan},
    )
    assert decide(found, keep=1).artifacts == (orphan, old)


def test_decide_keeps_images_pending_instructions_need():
    old = Artifact(IMAGE, PG, "1.8.0")
    found = survey_of({("prod", PG): (["1.8.0", "1.9.0"], "1.9.0")},
                      refs={"channels/prod/infra/db/pg/1.8.0": frozenset({old})}, artifacts={old}, needed={old})
    assert decide(found, keep=1).artifacts == ()


def test_decide_removes_volumes_only_when_asked():
    volume = Artifact(VOLUME, Label("infra/db", "pgdata"), "0.9.0")
    found = survey_of({}, artifacts={volume})
    assert decide(found, keep=1).artifacts == ()
    assert decide(found, keep=1).kept_volumes == (volume,)
    assert decide(found, keep=1, volumes=True).artifacts == (volume,)


def test_decide_counts_references_of_temporaries():
    image = Artifact(IMAGE, FRONTEND, "2.0.0")
    found = survey_of({}, refs={"channels/staging/web/frontend/.tmp-2.0.0-1-ab": frozenset({image})}, artifacts={image})
    assert decide(found, keep=1).artifacts == ()
