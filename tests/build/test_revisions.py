"""Images built from the revision an instruction records, not the working tree."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from conftest import copy_example, doit, snapshot
from instructing import instruct, tip

SERVE = "shipyard/web/app/bin/serve"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def example_repository(tmp_path: Path) -> tuple[Path, str]:
    """The example as a git checkout; returns it and the commit of its first state."""
    root = copy_example(tmp_path / "root")
    git(root, "init", "-q")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    first = git(root, "rev-parse", "HEAD")
    for instruction in (root / "channels").rglob("*.yaml"):  # the example names this repository's commit
        instruction.write_text(instruction.read_text().replace("9c35becf47fd", first))
    return root, first


def record(root: Path, revision: str, version: str = "1.1.0") -> None:
    (root / "channels/prod/web/frontend" / f"{version}.yaml").write_text(f"revision: {revision}\nvolumes: {{//web:static: 1.0.0}}\n")


def image_file(root: Path, image: str, member: str) -> bytes:
    with tarfile.open(root / "images" / image / "image.aci") as tar:
        return tar.extractfile(member).read()


def test_image_is_built_from_the_recorded_revision_while_the_working_tree_moved_on(tmp_path):
    root, first = example_repository(tmp_path)
    original = (root / SERVE).read_bytes()
    (root / SERVE).write_text("#!/bin/sh\necho moved on\n")
    record(root, first[:12])
    doit(root, "release:prod/web/frontend/1.1.0", check=True)
    assert image_file(root, "web/frontend/1.1.0", "rootfs/opt/frontend/bin/serve") == original


def test_build_json_records_the_full_commit(tmp_path):
    root, first = example_repository(tmp_path)
    record(root, first[:12])
    doit(root, "release:prod/web/frontend/1.1.0", check=True)
    assert json.loads((root / "images/web/frontend/1.1.0/build.json").read_text())["source"] == {"revision": first}


def test_the_rule_itself_comes_from_the_revision(tmp_path):
    root, first = example_repository(tmp_path)
    build = root / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace("/opt/frontend/bin/serve", "/opt/frontend/bin/serve-v2"))
    (root / "shipyard/web/app/bin/serve-v2").write_text("#!/bin/sh\n")
    record(root, first)
    doit(root, "release:prod/web/frontend/1.1.0", check=True)
    pod = json.loads((root / "channels/prod/web/frontend/1.1.0/pod.json").read_text())
    app = {a["name"]: a["app"] for a in pod["manifest"]["apps"]}["frontend"]
    assert app["exec"][0] == "/opt/frontend/bin/serve"


def test_working_tree_variable_opts_out_with_a_recorded_warning(tmp_path):
    root, first = example_repository(tmp_path)
    (root / SERVE).write_text("#!/bin/sh\necho moved on\n")
    record(root, first)
    result = doit(root, "release:prod/web/frontend/1.1.0", env={"PODRELEASE_WORKING_TREE": "1"}, check=True)
    assert "warning:" in result.stderr and "working tree" in result.stderr
    assert image_file(root, "web/frontend/1.1.0", "rootfs/opt/frontend/bin/serve") == b"#!/bin/sh\necho moved on\n"
    source = json.loads((root / "images/web/frontend/1.1.0/build.json").read_text())["source"]
    assert source["working_tree"] is True and source["revision"] == first


def test_a_revision_that_does_not_exist_is_one_line_and_writes_nothing(tmp_path):
    root, _ = example_repository(tmp_path)
    record(root, "0123456789ab")
    before = snapshot(root)
    result = doit(root, "release:prod/web/frontend/1.1.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("channels/prod/web/frontend/1.1.0.yaml:1: revision '0123456789ab' is not a commit")
    assert snapshot(root) == before


def test_outside_a_git_checkout_the_revision_is_only_recorded(tmp_path):
    root = copy_example(tmp_path / "root")
    record(root, "0123456789ab")
    doit(root, "release:prod/web/frontend/1.1.0", check=True)
    assert json.loads((root / "channels/prod/web/frontend/1.1.0/pod.json").read_text())["revision"] == "0123456789ab"
    assert "source" not in json.loads((root / "images/web/frontend/1.1.0/build.json").read_text())


def test_an_image_version_introduced_by_an_instruction_takes_its_revision_over_a_pin(tmp_path):
    root, first = example_repository(tmp_path)
    (root / SERVE).write_text("#!/bin/sh\necho second\n")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second")
    second = git(root, "rev-parse", "HEAD")
    record(root, first)  # prod 1.1.0 introduces frontend 1.1.0 at the first commit
    staging = root / "channels/staging/web/frontend/1.2.0.yaml"
    staging.write_text(staging.read_text().replace("9c35becf47fd", second))  # pins frontend 1.1.0
    doit(root, check=True)
    assert json.loads((root / "images/web/frontend/1.1.0/build.json").read_text())["source"]["revision"] == first


# ---------------------------------------------------------------- yanked instructions (moved from test_review_release.py)


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


def test_a_base_image_newer_than_the_recorded_revision_does_not_block_a_release(tmp_path):
    """The recorded revision has no base image: the image built at it needs none, and the base builds from today."""
    root, first = example_repository(tmp_path)
    build = root / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace("    from: //base:busybox@1.0.0\n", ""))
    git(root, "rm", "-q", "-r", "shipyard/base")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "before the base image")
    older = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", first, "--", "shipyard")  # today's rules: frontend starts from //base:busybox
    record(root, older, "1.5.0")
    result = doit(root)
    assert result.returncode == 0, result.stderr
    assert (root / "channels/prod/web/frontend/1.5.0/pod.json").is_file()
    assert (root / "images/base/busybox/1.0.0/sha512").is_file()


def test_a_command_failing_at_a_recorded_revision_says_so_and_points_at_the_command_line(tmp_path):
    root, _ = example_repository(tmp_path)
    build = root / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace('umask 022 &&\n        mkdir -p "$ROOTFS/opt/logship/bin"', 'exit 7 &&\n        mkdir -p "$ROOTFS/opt/logship/bin"'))
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "broken logship")
    broken = git(root, "rev-parse", "HEAD")
    (root / "channels/prod/web/frontend/1.3.0.yaml").write_text(f"revision: {broken}\nvolumes: {{//web:static: 1.0.0}}\n")
    build.write_text(build.read_text().replace("exit 7 &&", "umask 022 &&"))  # fixed in the working tree only
    result = doit(root, "release:prod/web/frontend/1.3.0")
    assert result.returncode != 0
    command_line = next(n for n, line in enumerate(build.read_text().splitlines(), 1) if line.strip() == "command:")
    assert (
        f"{broken[:12]}:shipyard/web/build.yaml:{command_line}: image //web:logship 1.3.0: command exited with status 7 "
        f"(built from revision {broken[:12]}, recorded at channels/prod/web/frontend/1.3.0.yaml:1, not from the working tree; "
        "commit a fix and release a new version, or PODRELEASE_WORKING_TREE=1 to try the working tree)"
    ) in result.stderr.splitlines()
