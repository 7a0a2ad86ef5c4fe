"""Registry reads over HTTP from a registry that asks for a Bearer token (tests/registrytoken.py).

The Reader is configured the way `Reads` configures it: from the environment
a podman user sets (`REGISTRY_AUTH_FILE`, `CONTAINERS_REGISTRIES_CONF`).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from podrelease.core.errors import RegistryError
from podrelease.registry.artifacts import ArtifactFile, write_artifact
from podrelease.registry.distribution import Declined, Reader, Reads
from podrelease.registry.skopeo import Skopeo

from registrytoken import USER, TokenRegistry

APP = "tokened/app"
OTHER = "tokened/other"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One registry asking for Bearer tokens, and the token server it trusts."""
    registry = TokenRegistry(tmp_path_factory.mktemp("token-registry"))
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def pushed(served, tmp_path_factory) -> dict[tuple[str, str], str]:
    """APP:1, APP:2 and OTHER:1, small artifacts pushed by skopeo with a token granting push: their digests."""
    work = tmp_path_factory.mktemp("token-artifacts")
    digests = {}
    for repository, tag in ((APP, "1"), (APP, "2"), (OTHER, "1")):
        content = work / f"{repository.replace('/', '-')}-{tag}"
        content.write_bytes(f"{repository} {tag}\n".encode())
        layout = work / f"{content.name}.layout"
        digest = write_artifact(layout, "application/x-podrelease-test", [ArtifactFile("content", content)], tag)
        served.skopeo("copy", "--preserve-digests", "--quiet", f"oci:{layout}:{tag}",
                      f"docker://{served.host}/{repository}:{tag}")
        digests[repository, tag] = digest
    return digests


@pytest.fixture
def token_registry(served, pushed, monkeypatch):
    """The registry with its token server's policy reset, and this process configured to reach it."""
    served.tokens.reset()
    for name, value in served.env().items():
        monkeypatch.setenv(name, value)
    return served


@pytest.fixture
def reader(token_registry):
    """A new Reader for the registry, configured from the environment as `Reads` configures its own."""
    return lambda: Reader(token_registry.host)


@pytest.fixture
def reads(token_registry):
    """A new `Reads`, as the store makes it: HTTP where it answers, skopeo otherwise."""
    return lambda: Reads(Skopeo(token_registry.host))


def test_the_reader_lists_tags_with_a_token(token_registry, reader):
    assert reader().tags(f"{token_registry.host}/{APP}") == {"1", "2"}


def test_the_reader_reads_a_manifest_bit_for_bit_as_skopeo_does(token_registry, pushed, reader):
    raw = reader().manifest(f"{token_registry.host}/{APP}", "1")
    assert raw == token_registry.skopeo("inspect", "--raw", f"docker://{token_registry.host}/{APP}:1").stdout
    assert raw is not None and "sha256:" + hashlib.sha256(raw).hexdigest() == pushed[APP, "1"]


def test_the_reader_reads_a_manifest_by_digest_with_a_token(token_registry, pushed, reader):
    digest = pushed[APP, "2"]
    raw = reader().manifest(f"{token_registry.host}/{APP}", digest)
    assert raw is not None and "sha256:" + hashlib.sha256(raw).hexdigest() == digest


def test_the_reader_streams_a_blob_with_the_repositorys_token(token_registry, reader):
    read = reader()
    layer = json.loads(read.manifest(f"{token_registry.host}/{APP}", "1") or b"{}")["layers"][0]
    received: list[bytes] = []
    read.blob(f"{token_registry.host}/{APP}", layer["digest"], layer["size"], received.append)
    assert b"".join(received) == f"{APP} 1\n".encode()
    assert token_registry.tokens.scopes() == [f"repository:{APP}:pull"]


def test_a_tag_that_is_not_there_reads_as_none_with_a_token(token_registry, reader):
    assert reader().manifest(f"{token_registry.host}/{APP}", "missing") is None


def test_a_repository_that_is_not_there_has_no_tags_with_a_token(token_registry, reader):
    assert reader().tags(f"{token_registry.host}/tokened/nothing-here") == set()


def test_the_token_is_asked_for_with_the_auth_files_credentials(token_registry, reader):
    reader().tags(f"{token_registry.host}/{APP}")
    assert token_registry.tokens.requests == [(f"repository:{APP}:pull", USER)]


def test_one_token_per_repository_is_fetched_and_reused_for_its_next_reads(token_registry, reader):
    read = reader()
    app, other = f"{token_registry.host}/{APP}", f"{token_registry.host}/{OTHER}"
    read.tags(app)
    read.manifest(app, "1")
    read.manifest(app, "2")
    read.tags(other)
    read.manifest(other, "1")
    read.tags(app)
    assert token_registry.tokens.scopes() == [f"repository:{APP}:pull", f"repository:{OTHER}:pull"]


def test_concurrent_reads_of_one_repository_fetch_one_token(token_registry, reader):
    read = reader()
    repository = f"{token_registry.host}/{APP}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: read.tags(repository), range(16)))
    assert answers == [{"1", "2"}] * 16
    assert token_registry.tokens.scopes() == [f"repository:{APP}:pull"]


def test_a_refused_token_is_fetched_again_once_and_the_read_succeeds(token_registry, reader):
    token_registry.tokens.expire_next(1)
    read = reader()
    assert read.tags(f"{token_registry.host}/{APP}") == {"1", "2"}
    assert read.manifest(f"{token_registry.host}/{APP}", "1") is not None
    assert token_registry.tokens.scopes() == [f"repository:{APP}:pull"] * 2


def test_a_cached_token_the_registry_no_longer_accepts_is_replaced(token_registry, reader):
    read = reader()
    assert read.tags(f"{token_registry.host}/{APP}") == {"1", "2"}
    token_registry.rotate_key()  # the registry restarts trusting a new signing key only
    assert read.manifest(f"{token_registry.host}/{APP}", "1") is not None
    assert token_registry.tokens.scopes() == [f"repository:{APP}:pull"] * 2


def test_a_token_refused_twice_declines_without_asking_a_third_time(token_registry, reader):
    token_registry.tokens.lifetime = -3600  # every token is issued expired
    with pytest.raises(Declined, match="401"):
        reader().tags(f"{token_registry.host}/{APP}")
    assert token_registry.tokens.scopes() == [f"repository:{APP}:pull"] * 2


def test_anonymous_pull_works_with_no_auth_entry(token_registry, reader, tmp_path, monkeypatch):
    token_registry.tokens.anonymous_pull = True
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(token_registry.write_auth(tmp_path / "auth.json", None)))
    assert reader().tags(f"{token_registry.host}/{APP}") == {"1", "2"}
    assert token_registry.tokens.requests == [(f"repository:{APP}:pull", None)]


def test_anonymous_pull_works_with_no_auth_file_at_all(token_registry, reader, tmp_path, monkeypatch):
    token_registry.tokens.anonymous_pull = True
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "never-written.json"))
    assert reader().manifest(f"{token_registry.host}/{APP}", "1") is not None


def test_an_anonymous_token_granting_nothing_makes_the_reader_decline(token_registry, reader, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(token_registry.write_auth(tmp_path / "auth.json", None)))
    with pytest.raises(Declined):
        reader().tags(f"{token_registry.host}/{APP}")


def test_wrong_credentials_make_the_reader_decline(token_registry, reader, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(token_registry.write_auth(tmp_path / "auth.json", USER, "wrong")))
    with pytest.raises(Declined, match="realm answered 401"):
        reader().manifest(f"{token_registry.host}/{APP}", "1")


def test_wrong_credentials_make_reads_raise_one_line_registry_error(token_registry, reads, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(token_registry.write_auth(tmp_path / "auth.json", USER, "wrong")))
    with pytest.raises(RegistryError) as raised:
        reads().tags(f"{token_registry.host}/{APP}")
    message = str(raised.value)
    assert "\n" not in message
    assert f"registry {token_registry.host} refused our credentials" in message


def test_reads_answers_over_http_without_running_skopeo(token_registry, pushed, reads, monkeypatch):
    monkeypatch.setenv("PODRELEASE_SKOPEO", "false")  # any fallback to skopeo would fail
    made = reads()
    assert made.tags(f"{token_registry.host}/{APP}") == {"1", "2"}
    assert made.digest(f"{token_registry.host}/{APP}:2") == pushed[APP, "2"]
