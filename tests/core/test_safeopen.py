"""core.safeopen: files opened for publishing, never through a link swapped in, never private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podrelease.core.errors import ContractError
from podrelease.core.safeopen import PrivateFile, open_published, open_real


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory outside the source holding a private `app.conf` (mode 0600)."""
    where = tmp_path / "outside"
    where.mkdir()
    (where / "app.conf").write_text("password=hunter2\n")
    os.chmod(where / "app.conf", 0o600)
    return where


@pytest.fixture
def source(tmp_path) -> Path:
    """A build folder holding `etc/app.conf`, readable by everyone."""
    where = tmp_path / "src"
    (where / "etc").mkdir(parents=True)
    (where / "etc/app.conf").write_text("listen=80\n")
    os.chmod(where / "etc/app.conf", 0o644)
    return where


def read(fd: int) -> bytes:
    with open(fd, "rb") as f:
        return f.read()


def test_a_source_planned_by_its_real_path_is_read(source):
    assert read(open_real(os.path.realpath(source / "etc/app.conf"))) == b"listen=80\n"


def test_a_directory_swapped_for_a_link_after_planning_is_not_followed(source, outside):
    planned = os.path.realpath(source / "etc/app.conf")
    (source / "etc/app.conf").unlink()
    (source / "etc").rmdir()
    (source / "etc").symlink_to(outside)  # the swap: same path, now an outside private file
    with pytest.raises(ContractError, match="leads through a symbolic link"):
        open_real(planned)


def test_a_file_swapped_for_a_link_after_planning_is_not_followed(source, outside):
    planned = os.path.realpath(source / "etc/app.conf")
    (source / "etc/app.conf").unlink()
    (source / "etc/app.conf").symlink_to(outside / "app.conf")
    with pytest.raises(ContractError, match="leads through a symbolic link"):
        open_real(planned)


def test_a_link_to_a_private_file_is_not_published(source, outside):
    (source / "secret").symlink_to(outside / "app.conf")
    with pytest.raises(PrivateFile, match=r"not readable by everyone \(mode 0600\)"):
        open_published(source / "secret", source)


def test_a_link_to_a_readable_file_in_a_closed_directory_is_not_published(source, outside):
    os.chmod(outside / "app.conf", 0o644)
    os.chmod(outside, 0o700)
    (source / "secret").symlink_to(outside / "app.conf")
    with pytest.raises(PrivateFile, match="the directory .*outside .mode 0700. is closed to others"):
        open_published(source / "secret", source)


def test_a_closed_directory_below_the_source_makes_its_files_private(source):
    os.chmod(source / "etc", 0o700)
    with pytest.raises(PrivateFile, match="is closed to others"):
        open_published(source / "etc/app.conf", source)


def test_the_source_and_the_directories_above_it_may_be_closed(source, tmp_path):
    os.chmod(source, 0o700)
    os.chmod(tmp_path, 0o700)
    assert read(open_published(source / "etc/app.conf", source)) == b"listen=80\n"


def test_without_following_no_link_below_the_source_is_taken(source):
    (source / "link.conf").symlink_to("etc/app.conf")
    with pytest.raises(ContractError, match="leads through a symbolic link"):
        open_published(source / "link.conf", source, follow=False)
