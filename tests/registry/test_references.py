"""Where artifacts live in a registry: names, tags and oci:// references."""

from __future__ import annotations

import pytest

from podrelease.registry.references import (
    Registry,
    companion_tag,
    parse_pod_reference,
    parse_registry,
    signature_tag,
    tag_of,
    version_of,
)


def test_a_registry_is_a_host_with_an_optional_port_and_a_prefix():
    assert parse_registry("127.0.0.1:5000/releases/acme") == Registry("127.0.0.1:5000", "releases/acme")
    assert str(parse_registry("registry.example.com/team")) == "registry.example.com/team"


@pytest.mark.parametrize("text", ["127.0.0.1:5000", "https://r.example.com/x", "r.example.com/Upper", "bad host/x", ""])
def test_a_registry_without_a_prefix_a_scheme_or_with_bad_names_is_refused(text):
    with pytest.raises(ValueError):
        parse_registry(text)


def test_artifacts_live_under_images_volumes_and_channels():
    registry = Registry("r:5000", "p")
    assert registry.image("web", "frontend") == "r:5000/p/images/web/frontend"
    assert registry.volume("infra/db", "pgdata") == "r:5000/p/volumes/infra/db/pgdata"
    assert registry.pod("prod", "web", "frontend") == "r:5000/p/channels/prod/web/frontend"


def test_a_label_path_a_registry_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="cannot be part of a registry repository name"):
        Registry("r", "p").image("web-", "frontend")


def test_versions_map_to_tags_one_to_one():
    assert tag_of("1.2.0") == "1.2.0"
    assert tag_of("1.2.0+build.5") == "1.2.0_build.5"
    assert version_of(tag_of("1.2.0+build.5")) == "1.2.0+build.5"


def test_tip_and_companion_tags_name_no_version():
    digest = "sha256:" + "ab" * 32
    assert companion_tag(digest) == "sha256-" + "ab" * 32 + ".aci"
    assert version_of(companion_tag(digest)) is None
    assert version_of("tip") is None


def test_a_signature_tag_is_never_a_version_tag():
    assert signature_tag("1.2.0+build.7") == "_sig.1.2.0_build.7"
    assert version_of(signature_tag("1.2.0")) is None


def test_a_version_too_long_for_a_plain_signature_tag_gets_a_hashed_one():
    long, longer = "1." + "0" * 124, "1." + "0" * 125
    assert signature_tag(long) != signature_tag(longer)
    assert all(len(signature_tag(v)) <= 128 and version_of(signature_tag(v)) is None for v in (long, longer))


def test_a_version_too_long_for_a_tag_is_refused():
    with pytest.raises(ValueError, match="cannot be a registry tag"):
        tag_of("1." + "0" * 200)


def test_an_oci_pod_reference_names_its_registry_repository_and_tag():
    found = parse_pod_reference("oci://127.0.0.1:5000/acme/channels/prod/web/frontend:tip")
    assert found.registry == Registry("127.0.0.1:5000", "acme")
    assert found.repository == "127.0.0.1:5000/acme/channels/prod/web/frontend"
    assert found.tag == "tip"


@pytest.mark.parametrize("url", [
    "oci://127.0.0.1:5000/acme/channels/prod/web/frontend",
    "oci://127.0.0.1:5000/acme/images/web/frontend:1.0.0",
    "oci://127.0.0.1:5000/acme/channels/prod:1.0.0",
])
def test_an_oci_reference_that_names_no_pod_version_is_refused(url):
    with pytest.raises(ValueError):
        parse_pod_reference(url)
