"""`doit verify --allowed-signers FILE`: every pod's pod.json.sig, through the real doit command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import doit
from sshkeys import HAVE_SSH_KEYGEN, allowed_signers, make_key

pytestmark = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="needs OpenSSH's ssh-keygen")

STAGING_POD = "channels/staging/web/frontend/1.2.0"


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    return make_key(tmp_path_factory.mktemp("keys"), "release")


@pytest.fixture(scope="module")
def signed(released_example, tmp_path_factory, key) -> Path:
    """The released example, signed afterwards (a run with the key adds the signatures)."""
    root = tmp_path_factory.mktemp("signed") / "root"
    shutil.copytree(released_example, root, symlinks=True)
    doit(root, env={"PODRELEASE_SIGNING_KEY": str(key), "SSH_AUTH_SOCK": ""}, check=True)
    return root


@pytest.fixture
def root(signed, tmp_path) -> Path:
    """A private copy of the signed example: tests may break it."""
    copy = tmp_path / "root"
    shutil.copytree(signed, copy, symlinks=True)
    return copy


def trusting(tmp_path: Path, key: Path, options: str = "") -> Path:
    return allowed_signers(tmp_path / "allowed_signers", ("release@example.com", key, options))


def verify_lines(root: Path, signers: Path) -> tuple[int, list[str]]:
    result = doit(root, "verify", "--allowed-signers", str(signers))
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()[:-1]


def test_a_signed_release_verifies_against_its_allowed_signers(signed, key, tmp_path):
    assert verify_lines(signed, trusting(tmp_path, key)) == (0, [])


def test_a_signed_release_verifies_without_allowed_signers_too(signed):
    assert doit(signed, "verify").returncode == 0  # pod.json.sig is not a stray file


def test_an_unsigned_pod_is_an_error(root, key, tmp_path):
    (root / STAGING_POD / "pod.json.sig").unlink()
    status, lines = verify_lines(root, trusting(tmp_path, key))
    assert status == 1
    assert lines == [f"{STAGING_POD}/pod.json: unsigned: no pod.json.sig beside it"]


def test_a_pod_json_changed_after_signing_is_an_error(root, key, tmp_path):
    pod_json = root / STAGING_POD / "pod.json"
    pod_json.write_text(json.dumps(json.loads(pod_json.read_text())))  # same content, other bytes
    status, lines = verify_lines(root, trusting(tmp_path, key))
    assert status == 1
    assert len(lines) == 1 and lines[0].startswith(f"{STAGING_POD}/pod.json.sig: signature does not match the data")


def test_a_key_allowed_only_for_another_channel_is_an_error_for_each_pod_of_that_channel(signed, key, tmp_path):
    status, lines = verify_lines(signed, trusting(tmp_path, key, 'namespaces="podrelease-prod"'))
    assert status == 1
    assert lines and all(line.startswith("channels/staging/") for line in lines)
    assert all("is not allowed to sign for podrelease-staging" in line for line in lines)


def test_a_missing_allowed_signers_file_is_a_usage_error(signed, tmp_path):
    result = doit(signed, "verify", "--allowed-signers", str(tmp_path / "absent"))
    assert result.returncode == 3  # doit's code for an error before anything is checked
    assert result.stderr.strip() == f"ERROR: allowed signers file {tmp_path / 'absent'}: missing or unreadable"
