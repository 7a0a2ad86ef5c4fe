"""Releasing a root end to end through the real doit command line."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_example, doit, executed, snapshot
from instructing import FRONTEND, failure_lines, instruct, tip

EXAMPLE_PODS = {
    "staging/web/frontend": ["1.0.0", "1.2.0"],
    "prod/web/frontend": ["1.1.0"],
    "prod/infra/db/pg": ["1.9.0", "1.10.0"],
    "staging/infra/db/pg": ["1.10.0"],
}


def image_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "images").rglob("sha512"))


def pod_json(root: Path, pod: str) -> dict:
    return json.loads((root / "channels" / pod / "pod.json").read_text())


def test_release_builds_every_pod_of_the_example(released_example):
    for pod, versions in EXAMPLE_PODS.items():
        for version in versions:
            assert (released_example / "channels" / pod / version / "pod.json").is_file()


def test_images_shared_by_instructions_are_built_once(released_example):
    built = [str(d.relative_to(released_example / "images")) for d in image_dirs(released_example)]
    assert built == sorted([
        "base/busybox/1.0.0", "infra/db/pg/1.10.0", "infra/db/pg/1.9.0",
        "web/frontend/1.0.0", "web/frontend/1.1.0",
        "web/logship/1.0.0", "web/logship/1.1.0", "web/logship/1.2.0",
    ])


def test_every_image_passes_actool_validate(released_example):
    for folder in image_dirs(released_example):
        result = subprocess.run(["actool", "validate", str(folder / "image.aci")], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_sha512_file_is_the_digest_of_the_uncompressed_tar(released_example):
    for folder in image_dirs(released_example):
        with gzip.open(folder / "image.aci") as tar:
            digest = hashlib.sha512(tar.read()).hexdigest()
        assert (folder / "sha512").read_text() == digest + "\n"


def test_pod_json_has_exactly_the_spec_keys(released_example):
    document = pod_json(released_example, "staging/web/frontend/1.2.0")
    assert list(document) == ["name", "version", "channel", "revision", "images", "volumes", "files", "manifest", "health"]
    assert document["name"] == "//web:frontend"
    assert document["version"] == "1.2.0"
    assert document["channel"] == "staging"
    assert document["revision"] is None  # the web instructions record none: built from the working tree
    assert pod_json(released_example, "prod/infra/db/pg/1.10.0")["revision"] == "9c35becf47fd"


def test_pinned_image_version_differs_from_pod_version(released_example):
    images = {i["name"]: i for i in pod_json(released_example, "staging/web/frontend/1.2.0")["images"]}
    assert images["frontend"]["version"] == "1.1.0"
    assert images["logship"]["version"] == "1.2.0"
    digest = (released_example / "images/web/frontend/1.1.0/sha512").read_text().strip()
    assert images["frontend"]["id"] == f"sha512-{digest}"
    assert images["frontend"]["path"] == "frontend/image.aci"


def test_pod_links_are_relative_and_resolve(released_example):
    pod = released_example / "channels/staging/web/frontend/1.2.0"
    for name, target in [("frontend", "images/web/frontend/1.1.0"), ("static", "volumes/web/static/1.0.0")]:
        link = pod / name
        assert not os.path.isabs(os.readlink(link))
        assert link.resolve() == (released_example / target).resolve()
    for image in pod_json(released_example, "staging/web/frontend/1.2.0")["images"]:
        assert (pod / image["path"]).is_file()


def test_volume_files_carry_their_sha512_and_size(released_example):
    volumes = pod_json(released_example, "staging/web/frontend/1.2.0")["volumes"]
    assert [v["label"] for v in volumes] == ["//web:static"]
    for entry in volumes[0]["files"]:
        path = released_example / "channels/staging/web/frontend/1.2.0" / entry["path"]
        assert hashlib.sha512(path.read_bytes()).hexdigest() == entry["sha512"]
        assert path.stat().st_size == entry["size"]


def test_each_image_aci_is_pinned_as_stored_by_sha512_and_size(released_example):
    pod = released_example / "channels/staging/web/frontend/1.2.0"
    for image in pod_json(released_example, "staging/web/frontend/1.2.0")["images"]:
        stored = (pod / image["path"]).read_bytes()
        assert image["aci"] == {"sha512": hashlib.sha512(stored).hexdigest(), "size": len(stored)}


def test_pod_files_are_copied_into_the_pod_directory_and_pinned(released_example):
    pod = released_example / "channels/staging/web/frontend/1.2.0"
    data = (pod / "frontend.service").read_bytes()
    assert pod_json(released_example, "staging/web/frontend/1.2.0")["files"] == [
        {"path": "frontend.service", "sha512": hashlib.sha512(data).hexdigest(), "size": len(data)},
    ]
    assert not (pod / "frontend.service").is_symlink()
    assert (pod / "frontend.service").read_bytes() == (released_example / "shipyard/web/units/frontend.service").read_bytes()


def test_manifest_merges_args_and_environment_image_then_pod_then_channel(released_example):
    manifest = pod_json(released_example, "staging/web/frontend/1.2.0")["manifest"]
    app = {a["name"]: a for a in manifest["apps"]}["frontend"]["app"]
    assert app["exec"] == ["/opt/frontend/bin/serve", "--config", "/etc/frontend.conf", "--port", "8080", "--verbose"]
    environment = {e["name"]: e["value"] for e in app["environment"]}
    assert environment == {"FRONTEND_ROOT": "/srv/static", "LOG_LEVEL": "debug", "APP_ENV": "production"}


def test_manifest_passes_actool_once_volume_sources_are_filled(released_example, tmp_path):
    manifest = pod_json(released_example, "prod/infra/db/pg/1.10.0")["manifest"]
    assert manifest["volumes"] == [{"name": "data", "kind": "host", "readOnly": False}]
    for volume in manifest["volumes"]:
        volume["source"] = str(tmp_path / volume["name"])
    path = tmp_path / "pod-manifest.json"
    path.write_text(json.dumps(manifest))
    result = subprocess.run(["actool", "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tip_points_at_the_highest_version_numerically(released_example):
    tips = {pod: os.readlink(released_example / "channels" / pod / "tip") for pod in EXAMPLE_PODS}
    assert tips == {
        "staging/web/frontend": "1.2.0",
        "prod/web/frontend": "1.1.0",
        "prod/infra/db/pg": "1.10.0",
        "staging/infra/db/pg": "1.10.0",
    }


def test_second_run_executes_nothing_and_touches_no_image(example):
    doit(example, check=True)
    before = {d: os.stat(d / "image.aci").st_mtime_ns for d in image_dirs(example)}
    again = doit(example, check=True)
    assert executed(again) == []
    assert {d: os.stat(d / "image.aci").st_mtime_ns for d in image_dirs(example)} == before


def test_deleting_the_state_file_rebuilds_nothing(example):
    doit(example, check=True)
    for state in example.glob(".doit.db*"):
        state.unlink()
    assert executed(doit(example, check=True)) == []


def test_same_sources_give_the_same_image_ids_in_another_root(released_example, tmp_path):
    other = copy_example(tmp_path / "other")
    doit(other, check=True, env={"TZ": "Asia/Tokyo"})
    for folder in image_dirs(released_example):
        twin = other / folder.relative_to(released_example)
        assert (twin / "sha512").read_text() == (folder / "sha512").read_text()


def test_release_one_instruction_by_task_name(example):
    result = doit(example, "release:prod/infra/db/pg/1.9.0", check=True)
    assert (example / "channels/prod/infra/db/pg/1.9.0/pod.json").is_file()
    assert not (example / "channels/prod/infra/db/pg/1.10.0").exists()
    assert os.readlink(example / "channels/prod/infra/db/pg/tip") == "1.9.0"
    assert "image:infra/db/pg/1.9.0" in executed(result)


def test_tip_moves_to_a_newer_version_released_later(example):
    doit(example, "release:prod/infra/db/pg/1.10.0", check=True)
    doit(example, "release:prod/infra/db/pg/1.9.0", check=True)
    assert os.readlink(example / "channels/prod/infra/db/pg/tip") == "1.10.0"


def test_doit_list_tells_pending_from_released(example):
    doit(example, "release:prod/infra/db/pg/1.9.0", check=True)
    lines = doit(example, "list", check=True).stdout.splitlines()
    status = {line.split()[1]: line.split()[0] for line in lines if line.split()[1].startswith("release:")}
    assert status["release:prod/infra/db/pg/1.9.0"] == "U"
    assert status["release:prod/infra/db/pg/1.10.0"] == "R"
    assert len(status) == 6


def test_parallel_threads_release_everything(example):
    doit(example, "-n", "2", "-P", "thread", check=True)
    assert len(image_dirs(example)) == 8
    assert executed(doit(example, check=True)) == []


def test_release_root_environment_variable_overrides_the_dodo_folder(example, tmp_path):
    runner = tmp_path / "elsewhere"
    runner.mkdir()
    shutil.copy(example / "dodo.py", runner / "dodo.py")
    doit(runner, "release:prod/infra/db/pg/1.9.0", env={"RELEASE_ROOT": str(example)}, check=True)
    assert (example / "channels/prod/infra/db/pg/1.9.0/pod.json").is_file()


def test_released_artifacts_are_readable_by_anyone_whatever_the_umask(tmp_path):
    root = copy_example(tmp_path / "root")
    subprocess.run(["sh", "-c", "umask 077 && \"$0\" -m doit release:prod/web/frontend/1.1.0", os.sys.executable], cwd=root, check=True, capture_output=True)
    for path in [*(root / "images").rglob("*"), *(root / "channels/prod/web/frontend/1.1.0").iterdir()]:
        if not path.is_symlink():
            assert path.stat().st_mode & 0o004, path


def test_no_temporary_is_left_behind(released_example):
    leftovers = [p for p in released_example.rglob(".tmp-*")]
    assert leftovers == []


# ---------------------------------------------------------------- user mistakes


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_volume_fails_before_any_image_is_built(example):
    shutil.rmtree(example / "volumes/web/static")
    before = snapshot(example)
    line = one_line_error(doit(example, "release:staging/web/frontend/1.0.0"))
    assert line.startswith("volumes/web/static/1.0.0/: volume //web:static version 1.0.0 is missing")
    assert not (example / "images").exists()
    assert {k: v for k, v in snapshot(example).items() if not k.startswith((".doit.db", ".podrelease"))} == before


def test_missing_volume_names_the_instruction_and_line_that_need_it(example):
    shutil.rmtree(example / "volumes/infra/db/pgdata")
    (example / "channels/prod/infra/db/pg/1.10.0.yaml").unlink()
    (example / "channels/staging/infra/db/pg/1.10.0.yaml").unlink()
    line = one_line_error(doit(example, "release:prod/infra/db/pg/1.9.0"))
    assert "(needed by channels/prod/infra/db/pg/1.9.0.yaml:3)" in line


@pytest.mark.parametrize(
    "relative, text, expected",
    [
        ("channels/prod/web/frontend/1.1.0.yaml", "imagez: {}\n", "channels/prod/web/frontend/1.1.0.yaml:1: unknown key 'imagez'"),
        ("channels/prod/web/frontend/1.1.0.yaml", "images: {//web:frontend: 1.0\n", "channels/prod/web/frontend/1.1.0.yaml:2: invalid YAML"),
        ("channels/prod/web/frontend/1.1.0.yaml", "rule: //web:Frontend\n", "channels/prod/web/frontend/1.1.0.yaml:1: label '//web:Frontend'"),
        ("channels/prod/web/frontend/1.1.0.yaml", "rule: //web/../etc:frontend\n", "channels/prod/web/frontend/1.1.0.yaml:1: label '//web/../etc:frontend'"),
        ("channels/prod/web/frontend/1.1.0.yaml", "rule: //web:nothing\n", "channels/prod/web/frontend/1.1.0.yaml:1: no pod rule //web:nothing"),
        ("channels/prod/web/frontend/1.1.0.yaml", "parameters: {args: --verbose}\n", "channels/prod/web/frontend/1.1.0.yaml:1: args must be a list"),
        ("channels/prod/web/frontend/1.1.0.yaml", "images: {//web:frontend: ../x}\n", "channels/prod/web/frontend/1.1.0.yaml:1: version of //web:frontend '../x'"),
        ("channels/prod/Web/frontend/1.1.0.yaml", "", "channels/prod/Web/frontend/1.1.0.yaml: bad instruction path"),
    ],
)
def test_user_mistake_gives_one_line_and_writes_nothing(example, relative, text, expected):
    path = example / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    before = snapshot(example)
    line = one_line_error(doit(example))
    assert line.startswith(expected), line
    assert snapshot(example) == before


def test_failing_command_shows_its_output_and_leaves_no_image(example):
    build = example / "shipyard/web/build.yaml"
    build.write_text(build.read_text().replace("umask 022 &&", "echo compiling; echo broken >&2; exit 3;"))
    result = doit(example, "image:web/logship/1.0.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "broken" in result.stderr
    assert "status 3" in result.stderr.strip().splitlines()[-1]
    assert not (example / "images/web/logship").exists() or not any((example / "images/web/logship").iterdir())


# ---------------------------------------------------------------- channel defaults and yanking


def test_channel_defaults_apply_to_every_pod_of_the_channel(example):
    (example / "channels/prod/channel.yaml").write_text("parameters: {args: [--quiet], environment: {REGION: eu, LOG_LEVEL: warn}}\n")
    (example / "channels/prod/web/frontend/1.1.0.yaml").write_text("volumes: {//web:static: 1.0.0}\nparameters: {environment: {LOG_LEVEL: error}}\n")
    doit(example, "release:prod/web/frontend/1.1.0", check=True)
    apps = {a["name"]: a["app"] for a in pod_json(example, "prod/web/frontend/1.1.0")["manifest"]["apps"]}
    assert apps["frontend"]["exec"][-1] == "--quiet"
    environment = {e["name"]: e["value"] for e in apps["frontend"]["environment"]}
    assert environment["REGION"] == "eu" and environment["LOG_LEVEL"] == "error"


def test_changing_channel_defaults_leaves_released_pods_alone(example):
    doit(example, "release:prod/web/frontend/1.1.0", check=True)
    before = (example / "channels/prod/web/frontend/1.1.0/pod.json").read_bytes()
    (example / "channels/prod/channel.yaml").write_text("parameters: {args: [--quiet]}\n")
    assert executed(doit(example, "release:prod/web/frontend/1.1.0", check=True)) == []
    assert (example / "channels/prod/web/frontend/1.1.0/pod.json").read_bytes() == before


def test_unknown_key_in_channel_file_is_one_line(example):
    (example / "channels/prod/channel.yaml").write_text("parameters: {}\nverbose: true\n")
    assert one_line_error(doit(example)).startswith("channels/prod/channel.yaml:2: unknown key 'verbose'")


def test_yanked_tip_moves_back_to_the_highest_other_version(example):
    doit(example, check=True)
    assert os.readlink(example / "channels/prod/infra/db/pg/tip") == "1.10.0"
    (example / "channels/prod/infra/db/pg/1.10.0.yaml").write_text("volumes: {//infra/db:pgdata: 1.0.0}\nyanked: true\nreason: corrupts indexes\n")
    doit(example, check=True)
    assert os.readlink(example / "channels/prod/infra/db/pg/tip") == "1.9.0"
    assert (example / "channels/prod/infra/db/pg/1.10.0/pod.json").is_file()


def test_doit_list_shows_a_yanked_version_as_such(example):
    (example / "channels/prod/infra/db/pg/1.10.0.yaml").write_text("yanked: true\nreason: corrupts indexes\n")
    lines = doit(example, "list", check=True).stdout.splitlines()
    assert any("release:prod/infra/db/pg/1.10.0" in line and "yanked: corrupts indexes" in line for line in lines)


def test_a_yanked_instruction_that_was_never_released_builds_nothing(example):
    (example / "channels/prod/infra/db/pg/1.10.0.yaml").write_text("yanked: true\n")
    doit(example, "release:prod/infra/db/pg/1.10.0", check=True)
    assert not (example / "channels/prod/infra/db/pg/1.10.0").exists()
    assert not (example / "images/infra/db/pg/1.10.0").exists()


def test_reason_without_yanked_is_an_error(example):
    (example / "channels/prod/infra/db/pg/1.10.0.yaml").write_text("reason: because\n")
    assert one_line_error(doit(example)).startswith("channels/prod/infra/db/pg/1.10.0.yaml:1: reason is only for a yanked instruction")


def test_bundle_task_releases_the_pod_then_writes_a_bundle_without_links(example):
    doit(example, "bundle:prod/infra/db/pg/1.10.0", check=True)
    bundle = example / "bundles/prod/infra/db/pg/1.10.0"
    document = json.loads((bundle / "pod.json").read_text())
    expected = {"pod.json", "pg/image.aci", "pg/sha512", *(f["path"] for v in document["volumes"] for f in v["files"])}
    # and the image's OCI blobs: the manifest pod.json pins, its config and its layers
    manifest_digest = document["images"][0]["oci"]
    manifest = json.loads((bundle / "pg/oci/blobs/sha256" / manifest_digest.removeprefix("sha256:")).read_bytes())
    for digest in [manifest_digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]:
        expected.add(f"pg/oci/blobs/sha256/{digest.removeprefix('sha256:')}")
    found = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if not p.is_dir()}
    assert found == expected
    assert not any(p.is_symlink() for p in bundle.rglob("*"))
    assert os.readlink(example / "channels/prod/infra/db/pg/tip") == "1.10.0"


def test_plain_doit_checks_every_pending_volume_before_building_any_image(example):
    shutil.rmtree(example / "volumes/infra/db/pgdata")
    line = one_line_error(doit(example))
    assert line.startswith("volumes/infra/db/pgdata/1.0.0/: volume //infra/db:pgdata version 1.0.0 is missing")
    assert not (example / "images").exists()


def test_a_bad_build_file_and_a_bad_instruction_are_both_reported(example):
    (example / "shipyard/web/build.yaml").write_text("images: []\n")
    (example / "channels/prod/infra/db/pg/1.9.0.yaml").write_text("imagez: {}\n")
    result = doit(example)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("shipyard/web/build.yaml:1: ") for line in lines), lines
    assert any(line.startswith("channels/prod/infra/db/pg/1.9.0.yaml:1: unknown key 'imagez'") for line in lines), lines


# ---------------------------------------------------------------- tip order (moved from test_review_release.py)


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


# ---------------------------------------------------------------- something at the tip path (moved from test_review_release.py)


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
