"""Signed releases: with PODRELEASE_SIGNING_KEY, every pod directory gets pod.json.sig.

Driven through the real `doit` command line on copies of the example, with
real keys, a real ssh-agent and OpenSSH's own `ssh-keygen -Y verify`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import copy_example, doit, executed, snapshot
from sshkeys import HAVE_SSH_AGENT, HAVE_SSH_KEYGEN, allowed_signers, make_key, plain_verify, public, ssh_add, ssh_agent

pytestmark = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="needs OpenSSH's ssh-keygen")

KEY_ENV = "PODRELEASE_SIGNING_KEY"
PRINCIPAL = "release@example.com"


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    return make_key(tmp_path_factory.mktemp("keys"), "release")


@pytest.fixture(scope="module")
def signers(tmp_path_factory, key) -> Path:
    return allowed_signers(tmp_path_factory.mktemp("trust") / "allowed_signers", (PRINCIPAL, key, ""))


@pytest.fixture(scope="module")
def signed_example(tmp_path_factory, key) -> Path:
    """The example, released once with a signing key."""
    root = copy_example(tmp_path_factory.mktemp("signed") / "root")
    doit(root, env={KEY_ENV: str(key), "SSH_AUTH_SOCK": ""}, check=True)
    return root


@pytest.fixture
def unsigned_copy(released_example, tmp_path) -> Path:
    """A private copy of the example released without a key."""
    copy = tmp_path / "root"
    shutil.copytree(released_example, copy, symlinks=True)
    return copy


def pod_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "channels").rglob("pod.json"))


def test_every_pod_directory_of_a_signed_release_has_a_signature(signed_example):
    found = pod_dirs(signed_example)
    assert found
    assert [p for p in found if not (p / "pod.json.sig").is_file()] == []


def test_each_signature_verifies_with_plain_ssh_keygen_in_its_channels_namespace(signed_example, signers):
    for pod_dir in pod_dirs(signed_example):
        channel = json.loads((pod_dir / "pod.json").read_text())["channel"]
        result = plain_verify((pod_dir / "pod.json").read_bytes(), pod_dir / "pod.json.sig", signers, PRINCIPAL, channel)
        assert result.returncode == 0, (pod_dir, result.stderr)


def test_a_signature_does_not_verify_in_another_channels_namespace(signed_example, signers):
    pod_dir = signed_example / "channels/staging/web/frontend/1.2.0"
    result = plain_verify((pod_dir / "pod.json").read_bytes(), pod_dir / "pod.json.sig", signers, PRINCIPAL, "prod")
    assert result.returncode != 0


def test_a_signed_release_run_again_with_the_key_does_nothing(signed_example, key):
    result = doit(signed_example, env={KEY_ENV: str(key), "SSH_AUTH_SOCK": ""}, check=True)
    assert executed(result) == []


def test_a_key_set_later_adds_only_the_missing_signatures(unsigned_copy, key, signers):
    before = {p: (p / "pod.json").read_bytes() for p in pod_dirs(unsigned_copy)}
    result = doit(unsigned_copy, env={KEY_ENV: str(key), "SSH_AUTH_SOCK": ""}, check=True)
    ran = executed(result)
    assert [name for name in ran if name.startswith("pod:")] and not [name for name in ran if name.startswith("image:")]
    assert {p: (p / "pod.json").read_bytes() for p in pod_dirs(unsigned_copy)} == before  # pod.json untouched
    for pod_dir in before:
        channel = json.loads(before[pod_dir])["channel"]
        assert plain_verify(before[pod_dir], pod_dir / "pod.json.sig", signers, PRINCIPAL, channel).returncode == 0
    assert not list(unsigned_copy.rglob(".tmp-*"))


def test_without_a_key_no_pod_is_signed_and_a_missing_signature_is_fine(unsigned_copy):
    assert not list(unsigned_copy.rglob("pod.json.sig"))
    assert executed(doit(unsigned_copy, check=True)) == []


@pytest.mark.skipif(not HAVE_SSH_AGENT, reason="needs ssh-agent and ssh-add")
def test_a_public_key_signs_through_ssh_agent(unsigned_copy, key, signers, tmp_path):
    only_public = tmp_path / "public" / "release.pub"  # no private key beside it: only the agent can sign
    only_public.parent.mkdir()
    shutil.copy(public(key), only_public)
    with ssh_agent(tmp_path) as sock:
        ssh_add(key, sock)
        doit(unsigned_copy, env={KEY_ENV: str(only_public), "SSH_AUTH_SOCK": str(sock)}, check=True)
    for pod_dir in pod_dirs(unsigned_copy):
        channel = json.loads((pod_dir / "pod.json").read_text())["channel"]
        data = (pod_dir / "pod.json").read_bytes()
        assert plain_verify(data, pod_dir / "pod.json.sig", signers, PRINCIPAL, channel).returncode == 0


def test_a_public_key_without_an_agent_fails_in_one_line_and_signs_nothing(unsigned_copy, key, tmp_path):
    only_public = tmp_path / "release.pub"
    shutil.copy(public(key), only_public)
    before = snapshot(unsigned_copy / "channels")
    result = doit(unsigned_copy, env={KEY_ENV: str(only_public), "SSH_AUTH_SOCK": ""})
    assert result.returncode != 0
    assert "none in ssh-agent" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert snapshot(unsigned_copy / "channels") == before


def test_a_signing_key_that_does_not_exist_stops_doit_before_anything(tmp_path):
    root = copy_example(tmp_path / "root")
    result = doit(root, env={KEY_ENV: str(tmp_path / "absent")})
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"{tmp_path / 'absent'}: no such file ({KEY_ENV} names the key that signs pods)"]
    assert not (root / "images").exists()


def test_a_bundle_carries_the_pods_signature(signed_example, key):
    doit(signed_example, "bundle:prod/infra/db/pg/1.10.0", env={KEY_ENV: str(key), "SSH_AUTH_SOCK": ""}, check=True)
    bundle = signed_example / "bundles/prod/infra/db/pg/1.10.0"
    pod_dir = signed_example / "channels/prod/infra/db/pg/1.10.0"
    assert (bundle / "pod.json.sig").read_bytes() == (pod_dir / "pod.json.sig").read_bytes()


def test_a_bundle_written_before_signing_gets_the_signature_added(unsigned_copy, key):
    doit(unsigned_copy, "bundle:prod/infra/db/pg/1.10.0", check=True)
    bundle = unsigned_copy / "bundles/prod/infra/db/pg/1.10.0"
    pod_json = (bundle / "pod.json").read_bytes()
    assert not (bundle / "pod.json.sig").exists()
    doit(unsigned_copy, "bundle:prod/infra/db/pg/1.10.0", env={KEY_ENV: str(key), "SSH_AUTH_SOCK": ""}, check=True)
    assert (bundle / "pod.json").read_bytes() == pod_json
    assert (bundle / "pod.json.sig").read_bytes() == (
        unsigned_copy / "channels/prod/infra/db/pg/1.10.0/pod.json.sig").read_bytes()
