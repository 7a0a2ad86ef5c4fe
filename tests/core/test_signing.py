"""SSH signatures over pod.json, with real keys made by OpenSSH's ssh-keygen in tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from podrelease.core import signing
from podrelease.core.errors import ContractError, SignatureError

from sshkeys import allowed_signers, make_key, ssh_agent

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")

POD_JSON = b'{"name": "shop", "version": "1.0", "channel": "prod"}\n'


@pytest.fixture
def alice(tmp_path: Path) -> Path:
    return make_key(tmp_path / "keys", "alice")


@pytest.fixture
def signers(tmp_path: Path, alice: Path) -> Path:
    return allowed_signers(tmp_path / "allowed_signers", ("alice@example.com", alice, ""))


@pytest.fixture
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private ssh-agent in SSH_AUTH_SOCK; killed at teardown."""
    with ssh_agent(tmp_path) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock


def refusal(data: bytes, signature: bytes, signers: Path, channel: str = "prod") -> str:
    """verify's refusal, checked to be one line."""
    with pytest.raises(SignatureError) as err:
        signing.verify(data, signature, signers, channel)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_namespace_is_podrelease_dash_channel():
    assert signing.namespace("prod") == "podrelease-prod"


def test_namespace_refuses_a_channel_that_is_not_a_name():
    with pytest.raises(SignatureError, match="channel"):
        signing.namespace('prod" evil')


def test_signature_error_is_a_contract_error():
    assert issubclass(SignatureError, ContractError)


def test_sign_then_verify_returns_the_principal(alice, signers, no_agent):
    signature = signing.sign(POD_JSON, alice, "prod")
    assert signature.startswith(b"-----BEGIN SSH SIGNATURE-----")
    assert signing.verify(POD_JSON, signature, signers, "prod") == "alice@example.com"


def test_signature_verifies_with_the_plain_ssh_keygen_cli(tmp_path, alice, signers, no_agent):
    sig = tmp_path / "pod.json.sig"
    sig.write_bytes(signing.sign(POD_JSON, alice, "prod"))
    result = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "alice@example.com",
         "-n", "podrelease-prod", "-s", str(sig)],
        input=POD_JSON,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr


def test_sign_leaves_no_temporaries(tmp_path, alice, no_agent, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    signing.sign(POD_JSON, alice, "prod")
    assert list(scratch.iterdir()) == []


def test_sign_keeps_the_data_private_while_ssh_keygen_reads_it(alice, no_agent, monkeypatch):
    seen = []
    real = signing._ssh_keygen

    def spy(args, data, timeout):
        target = Path(args[-1])
        seen.append((target.stat().st_mode & 0o777, target.parent.stat().st_mode & 0o777))
        return real(args, data, timeout)

    monkeypatch.setattr(signing, "_ssh_keygen", spy)
    signing.sign(POD_JSON, alice, "prod")
    assert seen == [(0o600, 0o700)]


def test_sign_gives_up_on_a_hanging_ssh_keygen(tmp_path, alice, monkeypatch):
    hang = tmp_path / "ssh-keygen"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setattr(signing, "SSH_KEYGEN", str(hang))
    started = time.monotonic()
    with pytest.raises(SignatureError, match="took longer than 0.5s"):
        signing.sign(POD_JSON, alice, "prod", timeout=0.5)
    assert time.monotonic() - started < 10


def test_verify_refuses_tampered_data(alice, signers, no_agent):
    signature = signing.sign(POD_JSON, alice, "prod")
    message = refusal(POD_JSON.replace(b"1.0", b"6.6"), signature, signers)
    assert "does not match the data" in message


def test_verify_refuses_an_empty_signature_as_unsigned(signers):
    assert "unsigned" in refusal(POD_JSON, b"", signers)


def test_verify_refuses_garbage_as_not_a_signature(signers):
    assert "not an SSH signature" in refusal(POD_JSON, b"\x00garbage" * 20, signers)


def test_verify_refuses_a_broken_armored_signature(signers):
    broken = b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"
    assert "not an SSH signature" in refusal(POD_JSON, broken, signers)


def test_verify_refuses_an_oversized_signature_without_running_ssh_keygen(signers, monkeypatch):
    monkeypatch.setattr(signing, "SSH_KEYGEN", "/nonexistent/ssh-keygen")
    huge = b"-----BEGIN SSH SIGNATURE-----\n" + b"A" * signing.MAX_SIGNATURE
    assert "larger than 64 KiB" in refusal(POD_JSON, huge, signers)


def test_read_signature_caps_its_size(tmp_path):
    sig = tmp_path / "pod.json.sig"
    sig.write_bytes(b"A" * (signing.MAX_SIGNATURE + 1))
    with pytest.raises(SignatureError, match="larger than 64 KiB"):
        signing.read_signature(sig)


def test_read_signature_calls_a_missing_file_unsigned(tmp_path):
    with pytest.raises(SignatureError, match="unsigned"):
        signing.read_signature(tmp_path / "pod.json.sig")


def test_verify_refuses_a_key_not_in_allowed_signers(tmp_path, signers, no_agent):
    mallory = make_key(tmp_path / "keys", "mallory")
    signature = signing.sign(POD_JSON, mallory, "prod")
    assert "unknown key" in refusal(POD_JSON, signature, signers)


def test_verify_refuses_a_key_allowed_only_for_another_channel(tmp_path, alice, no_agent):
    staging_only = allowed_signers(
        tmp_path / "allowed_signers", ("alice@example.com", alice, 'namespaces="podrelease-staging"')
    )
    signature = signing.sign(POD_JSON, alice, "prod")
    message = refusal(POD_JSON, signature, staging_only, "prod")
    assert "not allowed to sign for podrelease-prod" in message


def test_verify_accepts_a_key_whose_namespaces_include_the_channel(tmp_path, alice, no_agent):
    both = allowed_signers(
        tmp_path / "allowed_signers",
        ("alice@example.com", alice, 'namespaces="podrelease-staging,podrelease-prod"'),
    )
    signature = signing.sign(POD_JSON, alice, "prod")
    assert signing.verify(POD_JSON, signature, both, "prod") == "alice@example.com"


def test_verify_refuses_a_signature_made_for_another_channel(alice, signers, no_agent):
    signature = signing.sign(POD_JSON, alice, "staging")
    assert "made for another channel" in refusal(POD_JSON, signature, signers, "prod")


def test_verify_refuses_an_expired_key(tmp_path, alice, no_agent):
    expired = allowed_signers(tmp_path / "allowed_signers", ("alice@example.com", alice, 'valid-before="20200101"'))
    signature = signing.sign(POD_JSON, alice, "prod")
    assert "has expired" in refusal(POD_JSON, signature, expired)


def test_verify_refuses_a_missing_allowed_signers_file(tmp_path, alice, no_agent):
    signature = signing.sign(POD_JSON, alice, "prod")
    assert "allowed signers file" in refusal(POD_JSON, signature, tmp_path / "nowhere")


def test_sign_with_a_public_key_uses_the_agent(tmp_path, alice, signers, agent):
    subprocess.run(["ssh-add", str(alice)], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    public_only = tmp_path / "public"
    public_only.mkdir()
    pub = public_only / "alice.pub"  # no private key beside it: only the agent can sign
    shutil.copy(alice.parent / "alice.pub", pub)
    signature = signing.sign(POD_JSON, pub, "prod")
    assert signing.verify(POD_JSON, signature, signers, "prod") == "alice@example.com"


def test_sign_with_a_passphrase_key_loaded_in_the_agent_never_asks(tmp_path, signers, agent):
    locked = make_key(tmp_path / "locked", "alice", passphrase="correct horse")
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho 'correct horse'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
    subprocess.run(["ssh-add", str(locked)], check=True, stdin=subprocess.DEVNULL, capture_output=True, env=env)
    trusted = allowed_signers(signers, ("alice@example.com", locked, ""))
    signature = signing.sign(POD_JSON, locked, "prod")
    assert signing.verify(POD_JSON, signature, trusted, "prod") == "alice@example.com"


def test_sign_with_a_public_key_and_no_agent_fails_in_one_line(tmp_path, alice, no_agent):
    pub = tmp_path / "alice.pub"
    shutil.copy(alice.parent / "alice.pub", pub)
    with pytest.raises(SignatureError, match="^cannot sign with .*none in ssh-agent[^\n]*$"):
        signing.sign(POD_JSON, pub, "prod")


def test_sign_with_a_passphrase_key_and_no_agent_fails_fast_in_one_line(tmp_path, no_agent):
    locked = make_key(tmp_path / "keys", "locked", passphrase="correct horse")
    started = time.monotonic()
    with pytest.raises(SignatureError, match="^cannot sign with .*needs a passphrase[^\n]*$"):
        signing.sign(POD_JSON, locked, "prod", timeout=20)
    assert time.monotonic() - started < 10


def test_sign_with_a_missing_key_fails_in_one_line(tmp_path):
    with pytest.raises(SignatureError, match="no such file"):
        signing.sign(POD_JSON, tmp_path / "absent", "prod")


def test_signing_key_comes_from_the_environment():
    assert signing.signing_key({"PODRELEASE_SIGNING_KEY": "/keys/release"}) == Path("/keys/release")
    assert signing.signing_key({}) is None
