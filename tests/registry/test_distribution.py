"""Registry reads over HTTP answer as skopeo does, against a real docker-registry with basic auth, or leave the read to skopeo."""

from __future__ import annotations

import json
import uuid

import pytest

from podrelease.core.errors import RegistryError
from podrelease.registry.distribution import Declined, Reader, Reads
from podrelease.registry.references import parse_registry
from podrelease.registry.skopeo import Skopeo
from podrelease.registry.store import RegistryStore

VERSIONS = ("1.0.0", "1.1.0", "2.0.0")


@pytest.fixture
def configured(registry, monkeypatch):
    """The registry's auth file and registries.conf in the environment, as a runner has them."""
    for name, value in registry.env("unused").items():
        if name != "PODRELEASE_REGISTRY":
            monkeypatch.setenv(name, value)
    return registry


@pytest.fixture
def repository(configured, tmp_path) -> str:
    """A repository holding one small artifact under each of VERSIONS, pushed by skopeo."""
    (tmp_path / "payload").write_bytes(b"payload")
    where = f"{configured.host}/reads{uuid.uuid4().hex[:8]}/files"
    store = RegistryStore(parse_registry(f"{configured.host}/unused"))
    for version in VERSIONS:
        (tmp_path / "payload").write_bytes(version.encode())
        store.push_files(where, version, [("payload", tmp_path / "payload")], "application/x-test", tmp_path)
    return where


def test_tags_over_http_are_the_tags_skopeo_lists(configured, repository):
    assert Reader(configured.host).tags(repository) == Skopeo(configured.host).tags(repository) == set(VERSIONS)


def test_a_paged_tag_list_is_followed_to_its_end(configured, repository):
    assert Reader(configured.host, page_size=1).tags(repository) == set(VERSIONS)


def test_a_manifest_over_http_is_the_bytes_skopeo_reads(configured, repository):
    assert Reader(configured.host).manifest(repository, "1.1.0") == Skopeo(configured.host).manifest(f"{repository}:1.1.0")


def test_a_manifest_read_by_digest_is_the_one_the_tag_names(configured, repository):
    reads = Reads(Skopeo(configured.host))
    digest = reads.digest(f"{repository}:2.0.0")
    assert reads.digest(f"{repository}@{digest}") == digest
    assert json.loads(reads.manifest(f"{repository}@{digest}"))["artifactType"] == "application/x-test"


def test_a_missing_tag_has_no_manifest(configured, repository):
    assert Reader(configured.host).manifest(repository, "9.9.9") is None


def test_a_missing_repository_has_no_tags(configured):
    assert Reader(configured.host).tags(f"{configured.host}/never{uuid.uuid4().hex[:8]}/pushed") == set()


def test_one_reader_answers_many_reads_from_many_threads(configured, repository):
    from concurrent.futures import ThreadPoolExecutor

    reader = Reader(configured.host)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: reader.tags(repository), range(40)))
    assert answers == [set(VERSIONS)] * 40


def test_wrong_credentials_are_left_to_skopeo_which_says_so_in_one_line(configured, repository, tmp_path, monkeypatch):
    configured.allow(configured.host, password="wrong")
    try:
        with pytest.raises(Declined):
            Reader(configured.host).tags(repository)
        with pytest.raises(RegistryError, match=r"refused our credentials") as refused:
            Reads(Skopeo(configured.host)).tags(repository)
        assert "\n" not in str(refused.value)
    finally:
        configured.allow(configured.host)


def test_a_registry_not_marked_insecure_is_never_read_over_plain_http(configured, repository, tmp_path, monkeypatch):
    (tmp_path / "secure-only.conf").write_text("")
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "secure-only.conf"))
    with pytest.raises(Declined):
        Reader(configured.host).tags(repository)
    with pytest.raises(RegistryError, match="speaks plain HTTP"):
        Reads(Skopeo(configured.host)).tags(repository)


def test_a_host_configured_beyond_plain_http_is_read_by_skopeo(configured, repository, tmp_path, monkeypatch):
    host = configured.host
    (tmp_path / "mirrored.conf").write_text(
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n[[registry.mirror]]\nlocation = "{host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "mirrored.conf"))
    reads = Reads(Skopeo(host))
    with pytest.raises(Declined, match="mirrors"):
        reads.reader.tags(repository)
    assert reads.tags(repository) == set(VERSIONS)


def test_a_blob_streams_exactly_its_bytes(configured, repository):
    reads = Reads(Skopeo(configured.host))
    layer = json.loads(reads.manifest(f"{repository}:1.1.0"))["layers"][0]
    received = bytearray()
    reads.reader.blob(repository, layer["digest"], layer["size"], received.extend)
    assert bytes(received) == b"1.1.0"


@pytest.mark.parametrize("size_off_by", [-1, 1])
def test_a_blob_of_another_size_than_expected_is_declined(configured, repository, size_off_by):
    reads = Reads(Skopeo(configured.host))
    layer = json.loads(reads.manifest(f"{repository}:1.1.0"))["layers"][0]
    with pytest.raises(Declined):
        reads.reader.blob(repository, layer["digest"], layer["size"] + size_off_by, lambda data: None)


def test_a_blob_the_repository_lacks_is_declined(configured, repository):
    with pytest.raises(Declined):
        Reader(configured.host).blob(repository, "sha256:" + "0" * 64, 5, lambda data: None)
