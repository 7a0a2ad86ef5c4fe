"""write_bundle: a pod directory made self-contained, exactly as pod.json lays it out."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle
from podrelease.core.errors import UserError

from conftest import doit
from podfactory import Mount, ReleaseRoot, standard_pod, tarball, tree


@pytest.fixture
def release(tmp_path: Path) -> ReleaseRoot:
    return ReleaseRoot(tmp_path / "release")


def bundle_path(release: ReleaseRoot, *parts: str) -> Path:
    return release.root / "bundles" / Path(*parts)


def files_of(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def test_bundle_holds_exactly_the_files_pod_json_names(release):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    assert files_of(bundle) == {
        "pod.json", "frontend/image.aci", "frontend/sha512", "static/assets.tar.gz", "frontend.service",
    }


def test_bundle_files_have_the_content_of_the_release_root(release):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    for rel in files_of(bundle):
        assert (bundle / rel).read_bytes() == (pod_dir / rel).read_bytes()


def test_bundle_has_no_symlinks(release):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    assert not [p for p in bundle.rglob("*") if p.is_symlink()]


def test_bundle_files_are_hard_links_to_the_release_root(release):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    image = release.root / "images/web/frontend/1.1.0/image.aci"
    assert (bundle / "frontend/image.aci").stat().st_ino == image.stat().st_ino


def test_bundle_copies_when_the_filesystem_refuses_hard_links(release, monkeypatch):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")

    def no_link(src, dst, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    write_bundle(pod_dir, bundle)
    image = release.root / "images/web/frontend/1.1.0/image.aci"
    copied = bundle / "frontend/image.aci"
    assert copied.stat().st_ino != image.stat().st_ino
    assert copied.read_bytes() == image.read_bytes()
    assert copied.stat().st_mode & 0o777 == 0o644


def test_bundle_of_a_pod_with_a_deep_label_path(release):
    image = release.image("infra/db", "pg", "15.2")
    volume = release.volume("infra/db", "seed", "2", {"seed.tar": tarball({"a.sql": b"select 1;\n"}, gz=False)})
    pod_dir = release.pod("staging", "infra/db", "pg", "15.2-1", images=[image],
                          volumes=[Mount("seed", volume, "/seed")], files={"units/pg.service": b"[Unit]\n"})
    bundle = bundle_path(release, "staging", "infra", "db", "pg", "15.2-1")
    write_bundle(pod_dir, bundle)
    assert files_of(bundle) == {"pod.json", "pg/image.aci", "pg/sha512", "seed/seed.tar", "units/pg.service"}


def test_bundle_of_a_pod_with_an_empty_label_path(release):
    image = release.image("", "tool", "1")
    pod_dir = release.pod("prod", "", "tool", "1", images=[image], files={})
    bundle = bundle_path(release, "prod", "tool", "1")
    write_bundle(pod_dir, bundle)
    assert files_of(bundle) == {"pod.json", "tool/image.aci", "tool/sha512"}


def test_bundle_appears_with_no_temporary_left_beside_it(release):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    assert os.listdir(bundle.parent) == ["1.2.0"]


def test_bundle_refuses_an_image_that_does_not_match_its_id(release):
    pod_dir = standard_pod(release)
    image = release.root / "images/web/frontend/1.1.0/image.aci"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    with pytest.raises(UserError, match="image.aci"):
        write_bundle(pod_dir, bundle)
    assert os.listdir(bundle.parent) == []


def test_bundle_refuses_a_wrong_sha512_file(release):
    pod_dir = standard_pod(release)
    (release.root / "images/web/frontend/1.1.0/sha512").write_text("0" * 128 + "\n")
    with pytest.raises(UserError, match="sha512"):
        write_bundle(pod_dir, bundle_path(release, "prod", "web", "frontend", "1.2.0"))


def test_bundle_refuses_a_volume_file_changed_since_the_release(release):
    pod_dir = standard_pod(release)
    (release.root / "volumes/web/static/1.0.0/assets.tar.gz").write_bytes(tarball({"other": b"x"}))
    with pytest.raises(UserError, match="static/assets.tar.gz"):
        write_bundle(pod_dir, bundle_path(release, "prod", "web", "frontend", "1.2.0"))


def test_bundle_refuses_a_missing_volume_file(release):
    pod_dir = standard_pod(release)
    (release.root / "volumes/web/static/1.0.0/assets.tar.gz").unlink()
    with pytest.raises(UserError, match="static/assets.tar.gz: missing"):
        write_bundle(pod_dir, bundle_path(release, "prod", "web", "frontend", "1.2.0"))


def test_bundle_refuses_a_directory_without_pod_json(tmp_path):
    with pytest.raises(UserError, match="pod.json: missing"):
        write_bundle(tmp_path, tmp_path / "bundle")


def test_bundle_refuses_a_malformed_pod_json(release):
    pod_dir = standard_pod(release)
    doc = json.loads((pod_dir / "pod.json").read_text())
    doc["images"][0]["path"] = "../../../../etc/passwd"
    (pod_dir / "pod.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="images\\[0\\].path"):
        write_bundle(pod_dir, bundle_path(release, "prod", "web", "frontend", "1.2.0"))


def test_existing_bundle_is_never_rewritten(release):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    marker = bundle / "pod.json"
    before = marker.stat().st_ino
    write_bundle(pod_dir, bundle)
    assert marker.stat().st_ino == before


def test_bundle_packs_into_one_tar_and_unpacks_anywhere(release, tmp_path):
    pod_dir = standard_pod(release)
    bundle = bundle_path(release, "prod", "web", "frontend", "1.2.0")
    write_bundle(pod_dir, bundle)
    archive = tmp_path / "bundle.tar.gz"
    subprocess.run(["tar", "-C", str(bundle.parent), "-czf", str(archive), "1.2.0"], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["tar", "-C", str(elsewhere), "-xzf", str(archive)], check=True)
    assert tree(elsewhere / "1.2.0") == tree(bundle)


# ---------------------------------------------------------------- something at the bundle path, through doit (moved from test_review_release.py)


def test_a_stray_directory_at_the_bundle_path_is_one_line_error(example):
    stray = example / "bundles/prod/infra/db/pg/1.9.0"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("mine\n")
    result = doit(example, "bundle:prod/infra/db/pg/1.9.0")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bundles/prod/infra/db/pg/1.9.0/: is in the way of the bundle")
    assert (stray / "notes.txt").read_text() == "mine\n"
