"""Symlinks in rootfs sources are stored as symlinks, never followed.

A source tree may hold relative symlinks, absolute ones (which resolve
inside the container, so they are kept as written) and symlinks pointing
out of the build folder. None of them is followed: the image holds the link
itself, and nothing from outside the build folder gets into the image.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import copy_example, doit

LINKS = {
    # path in tree/ -> link target, exactly as the image must hold it
    "relative": "data.txt",
    "relative-dir": "sub",
    "absolute": "/etc/passwd",
    "absolute-dir": "/etc",
    "outside": "../../web/conf/frontend.conf",
    "outside-dir": "../../../volumes",
    "dangling": "no/such/file",
    "sub/up": "../data.txt",
}
NAMED_LINKS = {
    # rootfs entries whose `src` is itself a symlink: stored as that symlink at `dst`
    "/etc/hosts-link": "/etc/hosts",
    "/opt/outside-link": "../web/app",
}


def build_file(command: bool) -> str:
    text = """
        images:
          links:
            rootfs:
              - {src: tree, dst: /opt/tree/}
              - {src: hosts-link, dst: /etc/hosts-link}
              - {src: outside-link, dst: /opt/outside-link}
            app:
              exec: [/opt/tree/data.txt]
        pods:
          links:
            images: [links]
    """
    text = textwrap.dedent(text).lstrip()
    if command:
        # the staged copy must hold the link too: the command fails otherwise
        text = text.replace("    app:\n", "    command: [sh, -c, 'test -L \"$ROOTFS/opt/tree/absolute\"']\n    app:\n", 1)
    return text


def make_root(tmp_path: Path, command: bool) -> Path:
    root = copy_example(tmp_path / "root")
    folder = root / "shipyard/links"
    (folder / "tree/sub").mkdir(parents=True)
    (folder / "tree/data.txt").write_text("data\n")
    (folder / "tree/sub/file.txt").write_text("file\n")
    for name, target in LINKS.items():
        os.symlink(target, folder / "tree" / name)
    os.symlink("/etc/hosts", folder / "hosts-link")
    os.symlink("../web/app", folder / "outside-link")
    (folder / "build.yaml").write_text(build_file(command))
    (root / "channels/prod/links/links").mkdir(parents=True)
    (root / "channels/prod/links/links/1.0.0.yaml").write_text("")
    return root


def aci_members(root: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(root / "images/links/links/1.0.0/image.aci", "r:gz") as tar:
        return {member.name: member for member in tar.getmembers()}


@pytest.fixture(params=[False, True], ids=["streamed", "with-command"])
def released(request, tmp_path) -> Path:
    root = make_root(tmp_path, command=request.param)
    doit(root, "release:prod/links/links/1.0.0", check=True)
    return root


def test_symlinks_inside_a_source_tree_are_stored_as_written(released):
    members = aci_members(released)
    for name, target in LINKS.items():
        member = members[f"rootfs/opt/tree/{name}"]
        assert member.issym(), name
        assert member.linkname == target, name


def test_a_src_that_is_a_symlink_is_stored_as_that_symlink(released):
    members = aci_members(released)
    for dst, target in NAMED_LINKS.items():
        member = members[f"rootfs{dst}"]
        assert member.issym() and member.linkname == target, dst


def test_nothing_outside_the_build_folder_gets_into_the_image(released):
    members = aci_members(released)
    links = {f"rootfs/opt/tree/{name}" for name in LINKS} | {f"rootfs{dst}" for dst in NAMED_LINKS}
    below_a_link = [name for name in members if any(name.startswith(link + "/") for link in links)]
    assert below_a_link == []
    regular = sorted(name for name, member in members.items() if member.isfile())
    assert regular == ["manifest", "rootfs/opt/tree/data.txt", "rootfs/opt/tree/sub/file.txt"]


def test_the_image_with_symlinks_passes_actool_validate(released):
    image = released / "images/links/links/1.0.0/image.aci"
    result = subprocess.run(["actool", "validate", str(image)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_src_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    """Following `outside-link/` (trailing slash) would copy ../web/app: refused, nothing written."""
    root = make_root(tmp_path, command=False)
    build = root / "shipyard/links/build.yaml"
    build.write_text(build.read_text().replace("{src: outside-link, dst: /opt/outside-link}", "{src: outside-link/, dst: /opt/outside-link/}"))
    result = doit(root)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "shipyard/links/build.yaml:6: src 'outside-link/' leaves the build file's folder through a symlink"
    ]
    assert not (root / "images").exists()
