"""`doit volume-create` through the real doit command line."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import doit, snapshot

TARBALL = "volumes/web/static/2.0.0/static.tar.gz"


def make_source(folder: Path, mtime: int = 1_600_000_000, umask: int = 0o022) -> Path:
    """A small directory with a file, an executable, a subdirectory and a relative symlink."""
    old = os.umask(umask)
    try:
        (folder / "assets" / "img").mkdir(parents=True)
        (folder / "assets" / "index.html").write_text("<h1>v2</h1>\n")
        (folder / "assets" / "img" / "logo.svg").write_text("<svg/>\n")
        (folder / "bin").mkdir()
        (folder / "bin" / "seed").write_text("#!/bin/sh\n")
        os.chmod(folder / "bin" / "seed", 0o777 & ~umask)
        os.symlink("assets/index.html", folder / "index.html")
    finally:
        os.umask(old)
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return folder


def create(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = doit(root, "volume-create", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def members(tarball: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tarball, "r:gz") as tar:
        return tar.getmembers()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "static-v2"
    folder.mkdir()
    return make_source(folder)


def test_creates_the_tarball_at_the_volume_path(example, source):
    result = create(example, "//web:static@2.0.0", str(source))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"created {TARBALL} (7 entries, sha512 ")
    assert os.listdir(example / "volumes/web/static/2.0.0") == ["static.tar.gz"]


def test_entries_are_sorted_and_relative_to_the_directory(example, source):
    create(example, "//web:static@2.0.0", str(source))
    assert [m.name for m in members(example / TARBALL)] == [
        "assets", "assets/img", "assets/img/logo.svg", "assets/index.html", "bin", "bin/seed", "index.html",
    ]


def test_headers_carry_no_time_owner_or_umask(example, source):
    create(example, "//web:static@2.0.0", str(source))
    found = {m.name: m for m in members(example / TARBALL)}
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in found.values())
    assert oct(found["assets"].mode) == "0o755"
    assert oct(found["assets/index.html"].mode) == "0o644"
    assert oct(found["bin/seed"].mode) == "0o755"
    assert found["index.html"].issym() and found["index.html"].linkname == "assets/index.html"


def test_gzip_header_has_no_time_and_no_name(example, source):
    create(example, "//web:static@2.0.0", str(source))
    header = (example / TARBALL).read_bytes()[:10]
    assert header[3] == 0  # FLG: no FNAME
    assert header[4:8] == b"\0\0\0\0"  # MTIME


def test_same_content_gives_the_same_bytes_whatever_the_times_and_umask(example, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_source(tmp_path / "a", mtime=1_000_000_000, umask=0o022)
    second = make_source(tmp_path / "b", mtime=1_700_000_000, umask=0o077)
    create(example, "//web:static@2.0.0", str(first))
    create(example, "//web:static@2.0.1", str(second))
    assert (example / TARBALL).read_bytes() == (example / "volumes/web/static/2.0.1/static.tar.gz").read_bytes()


def test_tarball_extracts_to_the_directory_contents(example, source, tmp_path):
    create(example, "//web:static@2.0.0", str(source))
    out = tmp_path / "out"
    with tarfile.open(example / TARBALL, "r:gz") as tar:
        tar.extractall(out, filter="data")
    assert (out / "assets/img/logo.svg").read_text() == "<svg/>\n"
    assert os.readlink(out / "index.html") == "assets/index.html"


def test_files_are_readable_by_anyone(example, source):
    old = os.umask(0o077)
    try:
        create(example, "//web:static@2.0.0", str(source))
    finally:
        os.umask(old)
    assert oct((example / TARBALL).stat().st_mode & 0o777) == "0o644"
    assert oct((example / "volumes/web/static/2.0.0").stat().st_mode & 0o777) == "0o755"


def test_no_temporary_is_left_behind(example, source):
    create(example, "//web:static@2.0.0", str(source))
    assert [p.name for p in (example / "volumes/web/static").iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- refusals


def test_an_existing_version_is_refused_and_left_untouched(example, source):
    before = snapshot(example)
    result = create(example, "//web:static@1.0.0", str(source))
    assert result.returncode == 1
    assert result.stderr == (
        "doit volume-create: volumes/web/static/1.0.0/ already exists; volumes are never overwritten (create a new version)\n"
    )
    assert snapshot(example) == before


@pytest.mark.parametrize("spec, message", [
    ("web:static@2.0.0", "label 'web:static' must look like //<label_path>:<name>"),
    ("//web:Static@2.0.0", "label '//web:Static': name 'Static' is not a valid name"),
    ("//web:static@tip", "version 'tip' is not a valid version"),
    ("//web:static", "is not <label>@<version>"),
])
def test_bad_label_or_version_is_refused(example, source, spec, message):
    before = snapshot(example)
    result = create(example, spec, str(source))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert snapshot(example) == before


def test_a_missing_directory_is_refused(example, tmp_path):
    result = create(example, "//web:static@2.0.0", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr == f"doit volume-create: {tmp_path / 'nowhere'} is not a directory\n"
    assert not (example / "volumes/web/static/2.0.0").exists()


def test_a_symlink_leaving_the_directory_is_refused(example, source):
    os.symlink("/etc/passwd", source / "passwd")
    before = snapshot(example)
    result = create(example, "//web:static@2.0.0", str(source))
    assert result.returncode == 1
    assert "symlink -> /etc/passwd leaves the directory" in result.stderr
    assert snapshot(example) == before


def test_a_fifo_is_refused(example, source):
    os.mkfifo(source / "pipe")
    result = create(example, "//web:static@2.0.0", str(source))
    assert result.returncode == 1
    assert "not a regular file, directory or symlink" in result.stderr
    assert not (example / "volumes/web/static/2.0.0").exists()


def test_wrong_number_of_arguments_is_a_usage_error(example):
    result = create(example, "//web:static@2.0.0")
    assert result.returncode == 3
    assert result.stderr.startswith("doit volume-create: takes 2 arguments")


# ---------------------------------------------------------------- then release


def test_a_created_volume_is_released_with_its_sha512(example, source):
    create(example, "//web:static@2.0.0", str(source))
    (example / "channels/staging/web/frontend/2.0.0.yaml").write_text("images: {//web:frontend: 1.1.0}\n")
    doit(example, "release:staging/web/frontend/2.0.0", check=True)
    pod = json.loads((example / "channels/staging/web/frontend/2.0.0/pod.json").read_text())
    static = next(v for v in pod["volumes"] if v["name"] == "static")
    data = (example / TARBALL).read_bytes()
    assert static == {"label": "//web:static", "name": "static", "version": "2.0.0",
                      "files": [{"path": "static/static.tar.gz", "sha512": hashlib.sha512(data).hexdigest(),
                                 "size": len(data)}]}
    assert doit(example, "verify").returncode == 0


def test_release_still_never_creates_a_volume(example):
    (example / "channels/staging/web/frontend/2.0.0.yaml").write_text("images: {//web:frontend: 1.1.0}\n")
    result = doit(example, "release:staging/web/frontend/2.0.0")
    assert result.returncode != 0
    assert not (example / "volumes/web/static/2.0.0").exists()


def test_gzip_stream_is_valid(example, source):
    create(example, "//web:static@2.0.0", str(source))
    with gzip.open(example / TARBALL) as f:
        assert len(f.read()) % 10240 == 0
