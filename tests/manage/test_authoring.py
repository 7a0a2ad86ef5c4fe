"""`doit new` and `doit promote` through the real doit command line.

Revision tests run in a temporary git repository: the copied example
release root, committed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import copy_example, doit, executed, snapshot

STAGING = "channels/staging/web/frontend"
PROD = "channels/prod/web/frontend"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Release Tester", "-c", "user.email=tester@example.com", *args],
        cwd=root, capture_output=True, text=True, check=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    return result.stdout.strip()


def commit_all(root: Path) -> str:
    """Make `root` a git checkout with everything committed; return HEAD."""
    if not (root / ".git").exists():
        git(root, "init", "-q")
        (root / ".gitignore").write_text((Path(__file__).parent.parent.parent / ".gitignore").read_text())
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "release root")
    return git(root, "rev-parse", "HEAD")


def instruction(root: Path, path: str) -> dict:
    return yaml.safe_load((root / path).read_text()) or {}


def one_error(result: subprocess.CompletedProcess) -> str:
    """The command failed with exactly one line on stderr and no traceback; return it."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def drop_revisions(root: Path) -> None:
    """Instructions whose `revision:` names a commit of another repository would not release here."""
    for path in (root / "channels").rglob("*.yaml"):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if not line.startswith("revision:")))


@pytest.fixture
def checkout(example: Path) -> tuple[Path, str]:
    """The example release root as a fresh git checkout, and its HEAD."""
    drop_revisions(example)
    return example, commit_all(example)


@pytest.fixture
def released(released_example: Path, tmp_path: Path) -> Path:
    """A private copy of the released example."""
    copy = tmp_path / "released"
    shutil.copytree(released_example, copy, symlinks=True)
    return copy


# ---------------------------------------------------------------- doit new: revision


def test_new_writes_the_head_revision(checkout):
    root, head = checkout
    result = doit(root, "new", "staging/web/frontend/1.3.0", check=True)
    assert result.stdout == f"wrote {STAGING}/1.3.0.yaml\n"
    assert instruction(root, f"{STAGING}/1.3.0.yaml") == {"revision": head}


def test_new_instruction_ends_with_a_newline(checkout):
    root, _ = checkout
    doit(root, "new", "staging/web/frontend/1.3.0", check=True)
    assert (root / f"{STAGING}/1.3.0.yaml").read_text().endswith("\n")


def test_new_refuses_uncommitted_changes_in_shipyard_naming_them_and_writes_nothing(checkout):
    root, head = checkout
    with open(root / "shipyard/web/app/bin/serve", "a") as f:
        f.write("# work in progress\n")
    (root / "shipyard/web/app/new-file").write_text("not committed\n")
    before = snapshot(root)
    line = one_error(doit(root, "new", "staging/web/frontend/1.3.0"))
    assert line == (
        "doit new: shipyard/ has uncommitted changes (M shipyard/web/app/bin/serve, ?? shipyard/web/app/new-file); "
        f"images are built from the recorded revision {head[:12]}, without them: commit them first, "
        "or give --allow-dirty to record `dirty: true`"
    )
    assert snapshot(root) == before


def test_allow_dirty_writes_it_marked_dirty(checkout):
    root, head = checkout
    with open(root / "shipyard/web/app/bin/serve", "a") as f:
        f.write("# work in progress\n")
    doit(root, "new", "--allow-dirty", "staging/web/frontend/1.3.0", check=True)
    assert instruction(root, f"{STAGING}/1.3.0.yaml") == {"revision": head, "dirty": True}


def test_an_untracked_file_in_shipyard_is_an_uncommitted_change(checkout):
    root, _ = checkout
    (root / "shipyard/web/app/new-file").write_text("not committed\n")
    assert "?? shipyard/web/app/new-file" in one_error(doit(root, "new", "staging/web/frontend/1.3.0"))
    doit(root, "new", "staging/web/frontend/1.3.0", "--allow-dirty", check=True)
    assert instruction(root, f"{STAGING}/1.3.0.yaml")["dirty"] is True


def test_new_instructions_and_built_artifacts_do_not_make_it_dirty(checkout):
    root, head = checkout
    doit(root, check=True)  # images and pod directories appear
    (root / "channels/prod/web/frontend/1.5.0.yaml").write_text("")  # an uncommitted instruction
    doit(root, "new", "staging/web/frontend/1.3.0", check=True)
    assert instruction(root, f"{STAGING}/1.3.0.yaml") == {"revision": head}


def test_new_outside_a_git_checkout_writes_no_revision_and_says_so(example):
    result = doit(example, "new", "staging/web/frontend/1.3.0", check=True)
    assert result.stderr == "doit new: note: shipyard/ is not in a git checkout; no revision written\n"
    assert (example / f"{STAGING}/1.3.0.yaml").read_text() == "{}\n"


# ---------------------------------------------------------------- doit new: --from


def test_new_without_from_pins_nothing(checkout):
    root, _ = checkout
    doit(root, "new", "staging/web/frontend/1.3.0", check=True)
    assert set(instruction(root, f"{STAGING}/1.3.0.yaml")) == {"revision"}


def test_new_from_pins_every_version_the_source_resolves_to_and_copies_parameters(checkout):
    root, head = checkout
    doit(root, "new", "staging/web/frontend/1.3.0", "--from", "1.2.0", check=True)
    assert instruction(root, f"{STAGING}/1.3.0.yaml") == {
        "revision": head,
        "images": {"//web:frontend": "1.1.0", "//web:logship": "1.2.0"},
        "volumes": {"//web:static": "1.0.0"},
        "parameters": {"args": ["--verbose"], "environment": {"LOG_LEVEL": "debug"}},
    }


def test_new_from_a_released_version_pins_what_its_pod_json_records(released):
    pod_json_path = released / STAGING / "1.2.0/pod.json"
    recorded = json.loads(pod_json_path.read_text())
    assert {i["label"]: i["version"] for i in recorded["images"]} == {"//web:frontend": "1.1.0", "//web:logship": "1.2.0"}
    (released / STAGING / "1.2.0.yaml").write_text("volumes: {//web:static: 1.0.0}\n")  # the instruction no longer says so
    drop_revisions(released)
    doit(released, "new", "staging/web/frontend/1.3.0", "--from", "1.2.0", check=True)
    assert instruction(released, f"{STAGING}/1.3.0.yaml")["images"] == {"//web:frontend": "1.1.0", "//web:logship": "1.2.0"}


def test_a_version_made_with_new_from_builds_no_image(released):
    doit(released, "new", "staging/web/frontend/1.3.0", "--from", "1.2.0", check=True)
    result = doit(released, "release:staging/web/frontend/1.3.0", check=True)
    assert not [name for name in executed(result) if name.startswith("image:")]


def test_from_may_come_before_the_argument(checkout):
    root, _ = checkout
    doit(root, "new", "--from", "1.2.0", "staging/web/frontend/1.3.0", check=True)
    assert instruction(root, f"{STAGING}/1.3.0.yaml")["images"]["//web:frontend"] == "1.1.0"


def test_new_from_copies_an_explicit_rule(checkout):
    root, _ = checkout
    (root / "channels/staging/web/site").mkdir()
    (root / "channels/staging/web/site/1.0.0.yaml").write_text("rule: //web:frontend\n")
    doit(root, "new", "staging/web/site/1.1.0", "--from", "1.0.0", check=True)
    assert instruction(root, "channels/staging/web/site/1.1.0.yaml")["rule"] == "//web:frontend"


def test_keys_are_written_in_a_stable_order(checkout):
    root, _ = checkout
    with open(root / "shipyard/web/app/bin/serve", "a") as f:
        f.write("# dirty\n")
    doit(root, "new", "staging/web/frontend/1.3.0", "--from", "1.2.0", "--allow-dirty", check=True)
    assert list(instruction(root, f"{STAGING}/1.3.0.yaml")) == ["revision", "dirty", "images", "volumes", "parameters"]


def test_new_from_a_missing_version_is_refused(checkout):
    root, _ = checkout
    before = snapshot(root)
    line = one_error(doit(root, "new", "staging/web/frontend/1.3.0", "--from", "0.1.0"))
    assert line == f"doit new: --from 0.1.0: there is no instruction {STAGING}/0.1.0.yaml"
    assert snapshot(root) == before


# ---------------------------------------------------------------- doit new: refusals


def test_new_refuses_to_overwrite_an_instruction(checkout):
    root, _ = checkout
    before = snapshot(root)
    line = one_error(doit(root, "new", "staging/web/frontend/1.2.0"))
    assert line == f"doit new: {STAGING}/1.2.0.yaml already exists; instructions are never overwritten (release a new version)"
    assert snapshot(root) == before


def test_new_refuses_the_same_version_spelled_differently(checkout):
    root, _ = checkout
    line = one_error(doit(root, "new", "staging/web/frontend/1.2"))
    assert line == f"doit new: {STAGING}/1.2.yaml: version 1.2 is the same version as {STAGING}/1.2.0.yaml"
    assert not (root / f"{STAGING}/1.2.yaml").exists()


def test_new_refuses_a_pod_without_a_rule(checkout):
    root, _ = checkout
    before = snapshot(root)
    line = one_error(doit(root, "new", "staging/web/backend/1.0.0"))
    assert line == "channels/staging/web/backend/1.0.0.yaml: no pod rule //web:backend (looked in shipyard/web/build.yaml)"
    assert snapshot(root) == before


@pytest.mark.parametrize("target, problem", [
    ("staging/web/Frontend/1.0.0", "pod name 'Frontend' is not a valid name"),
    ("staging/web/frontend/tip", "version 'tip' is not a valid version"),
    ("Staging/web/frontend/1.0.0", "channel 'Staging' is not valid"),
    ("staging/../frontend/1.0.0", "label path segment '..' is not valid"),
])
def test_new_refuses_bad_names(checkout, target, problem):
    root, _ = checkout
    before = snapshot(root)
    line = one_error(doit(root, "new", target))
    assert line.startswith(f"doit new: '{target}' is not <channel>/<label_path>/<pod>/<version>: {problem}")
    assert snapshot(root) == before


def test_new_refuses_a_broken_build_file(checkout):
    root, _ = checkout
    (root / "shipyard/web/build.yaml").write_text("imagez: {}\n")
    line = one_error(doit(root, "new", "staging/web/frontend/1.3.0"))
    assert line.startswith("shipyard/web/build.yaml:1: unknown key 'imagez'")
    assert not (root / f"{STAGING}/1.3.0.yaml").exists()


def test_new_without_an_argument_is_a_usage_error(checkout):
    root, _ = checkout
    result = doit(root, "new")
    assert result.returncode == 3
    assert one_error(result).startswith("doit new: takes 1 argument")


# ---------------------------------------------------------------- doit new: then release


def test_new_instruction_releases_with_its_revision_and_verifies(checkout):
    root, head = checkout
    with open(root / "shipyard/web/app/bin/serve", "a") as f:
        f.write("# dirty\n")
    doit(root, "new", "staging/web/frontend/1.3.0", "--from", "1.2.0", "--allow-dirty", check=True)
    doit(root, "release:staging/web/frontend/1.3.0", check=True)
    pod = json.loads((root / f"{STAGING}/1.3.0/pod.json").read_text())
    assert pod["revision"] == head
    result = doit(root, "verify")
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------- doit promote


def pod_json(root: Path, pod_dir: str) -> dict:
    return json.loads((root / pod_dir / "pod.json").read_text())


def test_promote_pins_what_the_source_pod_used(released):
    result = doit(released, "promote", "staging/web/frontend/1.2.0", "prod", check=True)
    assert result.stdout == f"wrote {PROD}/1.2.0.yaml\n"
    source = pod_json(released, f"{STAGING}/1.2.0")
    assert source["revision"] is None  # the example's web instructions record none: none is written
    assert instruction(released, f"{PROD}/1.2.0.yaml") == {
        "images": {i["label"]: i["version"] for i in source["images"]},
        "volumes": {v["label"]: v["version"] for v in source["volumes"]},
    }


def test_promoted_release_builds_no_image(released):
    doit(released, "promote", "staging/web/frontend/1.2.0", "prod", check=True)
    result = doit(released, "release:prod/web/frontend/1.2.0", check=True)
    assert "pod:prod/web/frontend/1.2.0" in executed(result)
    assert not [task for task in executed(result) if task.startswith("image:")], result.stdout


def test_promoted_pod_runs_the_same_images_byte_for_byte(released):
    doit(released, "promote", "staging/web/frontend/1.2.0", "prod", check=True)
    doit(released, "release:prod/web/frontend/1.2.0", check=True)
    source, target = pod_json(released, f"{STAGING}/1.2.0"), pod_json(released, f"{PROD}/1.2.0")
    assert [(i["label"], i["id"]) for i in target["images"]] == [(i["label"], i["id"]) for i in source["images"]]
    assert [a["image"]["id"] for a in target["manifest"]["apps"]] == [a["image"]["id"] for a in source["manifest"]["apps"]]
    for image in source["images"]:
        source_aci = released / STAGING / "1.2.0" / image["path"]
        target_aci = released / PROD / "1.2.0" / image["path"]
        assert target_aci.read_bytes() == source_aci.read_bytes()
        assert os.path.realpath(target_aci) == os.path.realpath(source_aci)


def test_promoted_release_verifies(released):
    doit(released, "promote", "staging/web/frontend/1.2.0", "prod", check=True)
    doit(released, check=True)
    result = doit(released, "verify")
    assert result.returncode == 0, result.stdout


def test_promote_leaves_the_source_channel_parameters_behind(released):
    doit(released, "promote", "staging/web/frontend/1.2.0", "prod", check=True)
    assert "parameters" not in instruction(released, f"{PROD}/1.2.0.yaml")


def test_promote_keeps_an_explicit_rule(released):
    (released / "channels/staging/web/site").mkdir()
    (released / "channels/staging/web/site/1.2.0.yaml").write_text(
        "rule: //web:frontend\nimages: {//web:frontend: 1.1.0}\nvolumes: {//web:static: 1.0.0}\n"
    )
    doit(released, "release:staging/web/site/1.2.0", check=True)
    doit(released, "promote", "staging/web/site/1.2.0", "prod", check=True)
    assert instruction(released, "channels/prod/web/site/1.2.0.yaml")["rule"] == "//web:frontend"


def test_promote_carries_the_dirty_marker(released):
    path = released / f"{STAGING}/1.2.0.yaml"
    path.write_text(path.read_text() + "dirty: true\n")
    doit(released, "promote", "staging/web/frontend/1.2.0", "prod", check=True)
    assert instruction(released, f"{PROD}/1.2.0.yaml")["dirty"] is True


def test_promote_refuses_a_source_that_is_not_released(released):
    (released / f"{STAGING}/1.3.0.yaml").write_text("")
    before = snapshot(released)
    line = one_error(doit(released, "promote", "staging/web/frontend/1.3.0", "prod"))
    assert line == (
        "doit promote: staging/web/frontend/1.3.0 is not released "
        f"({STAGING}/1.3.0/pod.json does not exist); release it first: doit release:staging/web/frontend/1.3.0"
    )
    assert snapshot(released) == before


def test_promote_refuses_an_existing_target(released):
    (released / f"{PROD}/1.2.0.yaml").write_text("")
    line = one_error(doit(released, "promote", "staging/web/frontend/1.2.0", "prod"))
    assert line == f"doit promote: {PROD}/1.2.0.yaml already exists; instructions are never overwritten (release a new version)"
    assert (released / f"{PROD}/1.2.0.yaml").read_text() == ""


def test_promote_refuses_an_image_changed_since_release(released):
    (released / "images/web/frontend/1.1.0/sha512").write_text("0" * 128 + "\n")
    line = one_error(doit(released, "promote", "staging/web/frontend/1.2.0", "prod"))
    assert line.startswith("doit promote: image //web:frontend 1.1.0 changed since it was released")
    assert not (released / f"{PROD}/1.2.0.yaml").exists()


def test_promote_refuses_when_the_rule_now_names_another_image(released):
    build = released / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace("images: [//web:frontend, logship]", "images: [//web:frontend, logship, //infra/db:pg]"))
    line = one_error(doit(released, "promote", "staging/web/frontend/1.2.0", "prod"))
    assert line.startswith("doit promote: pod rule //web:frontend now has //infra/db:pg 1.2.0")
    assert not (released / f"{PROD}/1.2.0.yaml").exists()


def test_promote_to_the_same_channel_is_refused(released):
    line = one_error(doit(released, "promote", "staging/web/frontend/1.2.0", "staging"))
    assert line == "doit promote: staging/web/frontend/1.2.0 is already in channel staging"


def test_every_new_command_is_listed_by_doit_help(released):
    listed = [line.split() for line in doit(released, "help", check=True).stdout.splitlines()]
    for command in ("new", "promote", "cleanup", "volume-create", "status", "init"):
        # `doit help` names commands after the program: `-m new` under `python -m doit`
        assert any(words[:2] == ["-m", command] or words[:1] == [command] for words in listed), command


def test_new_works_in_a_fresh_root_without_released_artifacts(tmp_path):
    root = copy_example(tmp_path / "fresh")
    doit(root, "new", "prod/infra/db/pg/1.11.0", "--from", "1.10.0", check=True)
    assert instruction(root, "channels/prod/infra/db/pg/1.11.0.yaml") == {
        "images": {"//infra/db:pg": "1.10.0"}, "volumes": {"//infra/db:pgdata": "1.0.0"},
    }


# ---------------------------------------------------------------- channels that do not exist yet


def test_new_into_a_channel_that_does_not_exist_needs_new_channel(checkout):
    root, _ = checkout
    before = snapshot(root)
    line = one_error(doit(root, "new", "prdo/web/frontend/1.3.0"))
    assert line == ("doit new: channel 'prdo' does not exist (the channels are prod, staging); did you mean prod?; "
                    "give --new-channel to start it")
    assert snapshot(root) == before
    doit(root, "new", "--new-channel", "canary/web/frontend/1.3.0", check=True)
    assert (root / "channels/canary/web/frontend/1.3.0.yaml").is_file()


def test_promote_into_a_channel_that_does_not_exist_needs_new_channel(released):
    line = one_error(doit(released, "promote", "staging/web/frontend/1.2.0", "prdo"))
    assert line.startswith("doit promote: channel 'prdo' does not exist (the channels are prod, staging); did you mean prod?")
    assert not (released / "channels/prdo").exists()
    doit(released, "promote", "--new-channel", "staging/web/frontend/1.2.0", "canary", check=True)
    assert (released / "channels/canary/web/frontend/1.2.0.yaml").is_file()


def test_a_mistyped_rule_gets_a_suggestion(checkout):
    root, _ = checkout
    (root / "channels/staging/web/site").mkdir()
    (root / "channels/staging/web/site/1.0.0.yaml").write_text("rule: //web:frontnd\n")
    result = doit(root, "list")
    assert result.stderr.splitlines() == [
        "channels/staging/web/site/1.0.0.yaml:1: no pod rule //web:frontnd (looked in shipyard/web/build.yaml); did you mean //web:frontend?"
    ]


# ---------------------------------------------------------------- promoting yanked versions (moved from test_review_release.py)


def test_promoting_a_yanked_version_is_refused(example):
    doit(example, check=True)
    (example / "channels/staging/web/frontend/1.2.0.yaml").write_text(
        (example / "channels/staging/web/frontend/1.2.0.yaml").read_text() + "yanked: true\nreason: broken\n"
    )
    result = doit(example, "promote", "staging/web/frontend/1.2.0", "prod")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "yanked (broken)" in result.stderr
    assert not (example / "channels/prod/web/frontend/1.2.0.yaml").exists()


def test_promoting_a_mistyped_source_suggests_the_closest_released_version(released):
    line = one_error(doit(released, "promote", "staging/web/frontnd/1.2.0", "prod"))
    assert line == ("doit promote: staging/web/frontnd/1.2.0 is not released (channels/staging/web/frontnd/1.2.0/pod.json "
                    "does not exist); did you mean staging/web/frontend or prod/web/frontend?")
