"""Files as an OCI artifact layout: deterministic to write, distrustful to read."""

from __future__ import annotations

import hashlib
import json

import pytest

from podrelease.core import oci
from podrelease.core.errors import RegistryError
from podrelease.registry.artifacts import TITLE, ArtifactFile, read_artifact, write_artifact


def files(tmp_path):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "a").write_bytes(b"alpha")
    (tmp_path / "in" / "b").write_bytes(b"beta")
    return [ArtifactFile("a", tmp_path / "in" / "a"), ArtifactFile("sub/b", tmp_path / "in" / "b")]


def test_the_same_files_give_the_same_manifest_digest(tmp_path):
    first = write_artifact(tmp_path / "one", "application/x-test", files(tmp_path), "t")
    second = write_artifact(tmp_path / "two", "application/x-test", files(tmp_path), "t")
    assert first == second


def test_an_artifact_reads_back_its_files_by_title(tmp_path):
    write_artifact(tmp_path / "layout", "application/x-test", files(tmp_path), "t")
    found = read_artifact(tmp_path / "layout", "t", "application/x-test", "here")
    assert {title: path.read_bytes() for title, path in found.files.items()} == {"a": b"alpha", "sub/b": b"beta"}


def test_an_artifact_of_another_type_is_refused(tmp_path):
    write_artifact(tmp_path / "layout", "application/x-test", files(tmp_path), "t")
    with pytest.raises(RegistryError, match="expected application/x-other"):
        read_artifact(tmp_path / "layout", "t", "application/x-other", "here")


@pytest.mark.parametrize("title", ["../escape", "/etc/passwd", "a/./b", ""])
def test_a_title_that_is_not_a_safe_relative_path_is_refused(tmp_path, title):
    layout = tmp_path / "layout"
    digest = write_artifact(layout, "application/x-test", files(tmp_path), "t")
    manifest = json.loads((layout / oci.blob_rel(digest)).read_bytes())
    manifest["layers"][0]["annotations"][TITLE] = title
    data = oci.canonical_json(manifest)
    new = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / oci.blob_rel(new)).write_bytes(data)
    (layout / oci.INDEX_FILE).write_bytes(oci.index_bytes({"mediaType": oci.MEDIA_MANIFEST, "digest": new, "size": len(data)}, "t"))
    with pytest.raises(RegistryError):
        read_artifact(layout, "t", "application/x-test", "here")
