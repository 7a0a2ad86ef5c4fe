"""Building one image (podrelease.imaging), on real files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from podrelease.build.imaging import ImageBuildError, build_image, image_manifest, manifest_bytes
from podrelease.core.errors import UserError
from podrelease.core.names import Label
from podrelease.model.rules import App, ImageRule, RootfsEntry

from conftest import doit
from instructing import FRONTEND, failure_lines, instruct

VERSION = "1.0.0"


def write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


def make_sources(root: Path) -> Path:
    """shipyard/web with an app/ tree: an executable, a config, two symlinks."""
    folder = root / "shipyard/web"
    write(folder / "app/run", "#!/bin/sh\necho hi\n", 0o755)
    write(folder / "app/conf/app.conf", "port = 80\n", 0o640)
    os.symlink("conf/app.conf", folder / "app/current.conf")
    os.symlink("/usr/bin/env", folder / "app/env")
    write(folder / "extra.txt", "extra\n")
    os.chmod(folder / "app", 0o755)
    os.chmod(folder / "app/conf", 0o750)
    return folder


def make_rule(root: Path, **changes) -> ImageRule:
    rule = ImageRule(
        label=Label("web", "frontend"),
        build_file=root / "shipyard/web/build.yaml",
        line=1,
        name="web/frontend",
        rootfs=(RootfsEntry("app/", "/opt/app/"),),
        app=App(exec=("/opt/app/run",)),
        shown="shipyard/web/build.yaml",
    )
    return replace(rule, **changes)


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "release"
    make_sources(root)
    return root


def image_dir(root: Path, version: str = VERSION) -> Path:
    return root / "images/web/frontend" / version


def build(root: Path, **changes) -> str:
    return build_image(make_rule(root, **changes), VERSION, image_dir(root))


def members(root: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(image_dir(root) / "image.aci", "r:gz") as tar:
        return {info.name: info for info in tar.getmembers()}


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob(".tmp-*")]


@pytest.mark.skipif(shutil.which("actool") is None, reason="actool (appc-spec) not installed")
def test_image_passes_actool_validate(root):
    build(root)
    result = subprocess.run(["actool", "validate", str(image_dir(root) / "image.aci")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sha512_file_is_digest_of_uncompressed_tar(root):
    digest = build(root)
    shell = f"gzip -dc {image_dir(root) / 'image.aci'} | sha512sum"
    piped = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout.split()[0]
    assert (image_dir(root) / "sha512").read_text() == f"{piped}\n"
    assert digest == piped


def test_tar_holds_manifest_and_rootfs_sorted(root):
    build(root)
    names = list(members(root))
    assert names == sorted(names, key=lambda name: name.encode())
    assert names[:2] == ["manifest", "rootfs"]
    assert "rootfs/opt/app/run" in names


def test_tar_entries_have_zero_time_and_owners(root):
    build(root)
    for info in members(root).values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", ""), info.name


def test_manifest_is_canonical_json_with_version_os_arch_labels(root):
    build(root)
    with tarfile.open(image_dir(root) / "image.aci", "r:gz") as tar:
        data = tar.extractfile("manifest").read()
    manifest = json.loads(data)
    assert data == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert manifest["labels"] == [
        {"name": "version", "value": VERSION},
        {"name": "os", "value": "linux"},
        {"name": "arch", "value": "amd64"},
    ]
    assert manifest["app"]["exec"] == ["/opt/app/run"]
    assert (manifest["acKind"], manifest["acVersion"], manifest["name"]) == ("ImageManifest", "0.8.11", "web/frontend")


def test_manifest_has_no_app_when_rule_has_none(root):
    assert "app" not in image_manifest(make_rule(root, app=None), VERSION)


def test_manifest_bytes_end_without_newline(root):
    assert not manifest_bytes(image_manifest(make_rule(root), VERSION)).endswith(b"\n")


SECOND_BUILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from podrelease.build.imaging import build_image
    from podrelease.core.names import Label
    from podrelease.model.rules import App, ImageRule, RootfsEntry
    root = Path(sys.argv[1])
    rule = ImageRule(label=Label("web", "frontend"), build_file=root / "shipyard/web/build.yaml", line=1,
                     name="web/frontend", rootfs=(RootfsEntry("app/", "/opt/app/"),), app=App(exec=("/opt/app/run",)))
    print(build_image(rule, "1.0.0", root / "images/web/frontend/1.0.0"))
    """
)


def build_elsewhere_under_umask_077(tmp_path: Path, root: Path) -> Path:
    """Copy the sources (modes kept, times moved on) and build them in a child with umask 077."""
    other = tmp_path / "elsewhere/release"
    shutil.copytree(root / "shipyard", other / "shipyard", symlinks=True)
    for path in (other / "shipyard").rglob("*"):
        os.utime(path, (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    subprocess.run([sys.executable, "-c", SECOND_BUILD, str(other)], check=True, umask=0o077, capture_output=True)
    return other


def test_same_sha512_in_another_directory_under_another_umask_later(tmp_path, root):
    first = build(root)
    other = build_elsewhere_under_umask_077(tmp_path, root)
    assert (image_dir(other) / "sha512").read_text() == f"{first}\n"


def test_same_inputs_digest_in_another_directory(tmp_path, root):
    build(root)
    other = build_elsewhere_under_umask_077(tmp_path, root)
    record = json.loads((image_dir(root) / "build.json").read_text())
    other_record = json.loads((image_dir(other) / "build.json").read_text())
    assert record["inputs_digest"] == other_record["inputs_digest"]


def test_same_oci_manifest_digest_in_another_directory_under_another_umask_later(tmp_path, root):
    build(root)
    other = build_elsewhere_under_umask_077(tmp_path, root)
    record = json.loads((image_dir(root) / "build.json").read_text())
    other_record = json.loads((image_dir(other) / "build.json").read_text())
    assert record["oci"].startswith("sha256:")
    assert record["oci"] == other_record["oci"]


def test_same_oci_manifest_digest_on_one_core_or_two(root, monkeypatch):
    digests = set()
    for workers in (1, 2):
        monkeypatch.setattr("podrelease.build.archive.default_workers", lambda workers=workers: workers)
        build_image(make_rule(root), "1.0.0", root / f"one-or-two/{workers}")
        digests.add(json.loads((root / f"one-or-two/{workers}/build.json").read_text())["oci"])
    assert len(digests) == 1


def test_artifacts_are_world_readable_under_umask_077(tmp_path, root):
    other = build_elsewhere_under_umask_077(tmp_path, root)
    assert os.stat(image_dir(other)).st_mode & 0o777 == 0o755
    for name in ("image.aci", "sha512", "build.json"):
        assert os.stat(image_dir(other) / name).st_mode & 0o777 == 0o644


def test_relative_and_absolute_symlinks_are_kept(root):
    build(root)
    tar = members(root)
    assert tar["rootfs/opt/app/current.conf"].issym()
    assert tar["rootfs/opt/app/current.conf"].linkname == "conf/app.conf"
    assert tar["rootfs/opt/app/env"].linkname == "/usr/bin/env"


def test_symlink_named_by_src_is_stored_as_symlink(root):
    build(root, rootfs=(RootfsEntry("app/env", "/bin/env"),))
    assert members(root)["rootfs/bin/env"].linkname == "/usr/bin/env"


def test_source_modes_are_kept(root):
    folder = root / "shipyard/web"
    write(folder / "app/suid", "x", 0o4755)
    os.mkdir(folder / "app/tmp")
    os.chmod(folder / "app/tmp", 0o1777)
    build(root)
    modes = {name: info.mode for name, info in members(root).items()}
    assert modes["rootfs/opt/app/run"] == 0o755
    assert modes["rootfs/opt/app/conf"] == 0o750
    assert modes["rootfs/opt/app/conf/app.conf"] == 0o640
    assert modes["rootfs/opt/app/suid"] == 0o4755
    assert modes["rootfs/opt/app/tmp"] == 0o1777


def test_mode_override_sets_the_file_mode(root):
    build(root, rootfs=(RootfsEntry("app/conf/app.conf", "/etc/app.conf", mode=0o600),))
    assert members(root)["rootfs/etc/app.conf"].mode == 0o600


def test_mode_override_on_directory_leaves_its_contents_alone(root):
    build(root, rootfs=(RootfsEntry("app/conf", "/etc/app", mode=0o700),))
    tar = members(root)
    assert tar["rootfs/etc/app"].mode == 0o700
    assert tar["rootfs/etc/app/app.conf"].mode == 0o640


def test_implicit_parent_directories_are_0755(root):
    build(root, rootfs=(RootfsEntry("extra.txt", "/usr/share/doc/extra.txt"),))
    tar = members(root)
    assert [tar[f"rootfs/{d}"].mode for d in ("usr", "usr/share", "usr/share/doc")] == [0o755] * 3
    assert tar["rootfs"].mode == 0o755


def test_file_into_directory_when_dst_ends_with_slash(root):
    build(root, rootfs=(RootfsEntry("extra.txt", "/opt/"),))
    assert "rootfs/opt/extra.txt" in members(root)


def test_directory_src_without_slash_copies_its_contents(root):
    build(root, rootfs=(RootfsEntry("app", "/srv"),))
    assert "rootfs/srv/run" in members(root)
    assert "rootfs/srv/app" not in members(root)


def test_later_entries_override_files_and_merge_directories(root):
    write(root / "shipyard/web/other/run", "new", 0o700)
    write(root / "shipyard/web/other/added", "added")
    build(root, rootfs=(RootfsEntry("app/", "/opt/app/"), RootfsEntry("other/", "/opt/app/")))
    with tarfile.open(image_dir(root) / "image.aci", "r:gz") as tar:
        assert tar.extractfile("rootfs/opt/app/run").read() == b"new"
        assert tar.getmember("rootfs/opt/app/run").mode == 0o700
        assert {"rootfs/opt/app/added", "rootfs/opt/app/conf/app.conf"} <= set(tar.getnames())


def test_replacing_a_directory_by_a_file_is_user_error(root):
    with pytest.raises(UserError, match="cannot replace"):
        build(root, rootfs=(RootfsEntry("app/", "/opt/app/"), RootfsEntry("extra.txt", "/opt/app/conf")))


def test_src_escaping_with_dotdot_is_user_error(root):
    write(root / "shipyard/secret", "secret")
    entry = RootfsEntry("../secret", "/secret", line=7)
    with pytest.raises(UserError) as caught:
        build(root, rootfs=(entry,))
    assert str(caught.value) == "shipyard/web/build.yaml:7: rootfs src '../secret' is outside the build file's folder"


def test_src_through_symlinked_directory_outside_is_user_error(tmp_path, root):
    write(tmp_path / "outside/secret", "secret")
    os.symlink(tmp_path / "outside", root / "shipyard/web/linked")
    with pytest.raises(UserError, match="outside the build file's folder"):
        build(root, rootfs=(RootfsEntry("linked/secret", "/secret"),))


def test_dst_escaping_the_image_root_is_user_error(root):
    with pytest.raises(UserError, match="goes above the image root"):
        build(root, rootfs=(RootfsEntry("extra.txt", "/opt/../../etc/passwd"),))


def test_missing_src_is_user_error(root):
    with pytest.raises(UserError, match="does not exist"):
        build(root, rootfs=(RootfsEntry("nope", "/nope"),))


def test_fifo_in_sources_is_user_error(root):
    os.mkfifo(root / "shipyard/web/app/pipe")
    with pytest.raises(UserError, match="app/pipe is a fifo"):
        build(root)


def test_user_error_leaves_nothing_behind(root):
    with pytest.raises(UserError):
        build(root, rootfs=(RootfsEntry("nope", "/nope"),))
    assert not (root / "images").exists()


def test_failing_command_raises_with_status_and_output(root):
    rule = make_rule(root, label=Label("web", "tool"), line=12, command=("sh", "-c", "echo out; echo err >&2; exit 3"))
    with pytest.raises(ImageBuildError) as caught:
        build_image(rule, VERSION, image_dir(root))
    error = caught.value
    assert (error.returncode, error.output) == (3, "out\nerr\n")
    assert str(error) == "shipyard/web/build.yaml:12: image //web:tool 1.0.0: command exited with status 3"


def test_errors_name_the_build_file_by_path_when_not_told_how_to_show_it(root):
    with pytest.raises(UserError) as caught:
        build(root, shown="", rootfs=(RootfsEntry("nope", "/nope", line=3),))
    assert str(caught.value).startswith(f"{root / 'shipyard/web/build.yaml'}:3: ")


def test_failing_command_leaves_nothing_behind(root):
    with pytest.raises(ImageBuildError):
        build(root, command=("sh", "-c", "touch $ROOTFS/half; exit 1"))
    assert not image_dir(root).exists()
    assert leftovers(root) == []


def test_command_changes_the_staged_rootfs(root):
    script = 'test -x "$ROOTFS/opt/app/run" && cp extra.txt "$ROOTFS/opt/app/extra" && rm "$ROOTFS/opt/app/env"'
    build(root, command=("sh", "-c", script))
    names = members(root)
    assert "rootfs/opt/app/extra" in names
    assert "rootfs/opt/app/env" not in names


def test_command_runs_under_umask_022(root):
    previous = os.umask(0o077)
    try:
        build(root, command=("sh", "-c", 'mkdir "$ROOTFS/made" && touch "$ROOTFS/made/file"'))
    finally:
        os.umask(previous)
    tar = members(root)
    assert (tar["rootfs/made"].mode, tar["rootfs/made/file"].mode) == (0o755, 0o644)


def test_staged_copy_keeps_source_modes_and_symlinks(root):
    sha_without_command = build_image(make_rule(root), "1.0.0", root / "a")
    sha_with_noop_command = build_image(make_rule(root, command=("true",)), "1.0.0", root / "b")
    assert sha_with_noop_command == sha_without_command


def test_command_build_leaves_no_staging_or_temporaries(root):
    build(root, command=("true",))
    assert sorted(p.name for p in image_dir(root).iterdir()) == ["build.json", "image.aci", "oci", "sha512"]
    assert leftovers(root) == []


def test_command_replacing_rootfs_by_a_symlink_is_user_error(root):
    with pytest.raises(UserError, match=r"removed or replaced \$ROOTFS"):
        build(root, command=("sh", "-c", 'rm -rf "$ROOTFS" && ln -s / "$ROOTFS"'))
    assert leftovers(root) == []


def test_fifo_made_by_command_is_user_error(root):
    with pytest.raises(UserError, match=r"\$ROOTFS/pipe is a fifo"):
        build(root, command=("sh", "-c", 'mkfifo "$ROOTFS/pipe"'))


def test_command_missing_is_user_error(root):
    with pytest.raises(UserError, match="cannot run 'no-such-command-xyz'"):
        build(root, command=("no-such-command-xyz",))


def test_build_json_records_rule_and_each_source_file(root):
    sha512 = build(root, command=("true",))
    record = json.loads((image_dir(root) / "build.json").read_text())
    assert (record["label"], record["version"], record["id"]) == ("//web:frontend", VERSION, f"sha512-{sha512}")
    assert record["inputs"]["rule"]["command"] == ["true"]
    by_path = {item["path"]: item for item in record["inputs"]["rootfs"]}
    run = (root / "shipyard/web/app/run").read_bytes()
    assert by_path["/opt/app/run"] == {
        "path": "/opt/app/run",
        "type": "file",
        "mode": "0755",
        "source": "app/run",
        "sha256": hashlib.sha256(run).hexdigest(),
    }


def test_inputs_digest_changes_when_a_source_changes(root):
    build(root)
    before = json.loads((image_dir(root) / "build.json").read_text())["inputs_digest"]
    write(root / "shipyard/web/app/run", "changed", 0o755)
    build_image(make_rule(root), "1.0.1", image_dir(root, "1.0.1"))
    after = json.loads((image_dir(root, "1.0.1") / "build.json").read_text())["inputs_digest"]
    assert before != after


def test_large_file_is_streamed_not_held(root, monkeypatch):
    monkeypatch.setattr("podrelease.build.archive.default_workers", lambda: 2)  # memory in flight grows with workers
    size = 48 * 1024 * 1024
    line = b"streamed data line, compressible but not trivially so 0123456789\n"
    write(root / "shipyard/web/app/big", line * (size // len(line)))
    tracemalloc.start()
    try:
        build(root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 3


# ---------------------------------------------------------------- something at the image path, through doit (moved from test_review_release.py)


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
