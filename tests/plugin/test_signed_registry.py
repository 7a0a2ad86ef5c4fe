"""Signed releases through a registry: the pod artifact carries pod.json.sig, a host checks it.

Driven through the real doit and ops-onboard command lines against a real
docker-registry (tests/registryhelpers.py) with real SSH keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import copy_example, doit, executed
from sshkeys import HAVE_SSH_KEYGEN, allowed_signers, make_key

# each test builds the example and pushes it: slow (CI runs them with `pytest -m slow`)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="needs OpenSSH's ssh-keygen")]


def deploy(ops: Path, url: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podrelease.deploy.cli", "--root", str(ops), *args, "deploy", url],
                          env={**os.environ, **env, "OPS_ONBOARD_NO_START": "1"}, capture_output=True, text=True,
                          timeout=300)


def test_a_signed_release_pushed_to_a_registry_deploys_only_with_its_signature(tmp_path, registry, ops):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    key = make_key(tmp_path / "keys", "release")
    signers = allowed_signers(tmp_path / "allowed_signers", ("release@example.com", key, ""))
    root = copy_example(tmp_path / "runner")
    doit(root, env={**registry.env(prefix), "PODRELEASE_SIGNING_KEY": str(key), "SSH_AUTH_SOCK": ""}, check=True)
    url = f"oci://{registry.host}/{prefix}/channels/staging/web/frontend:tip"
    deployed = deploy(ops, url, registry.env(prefix), "--allowed-signers", str(signers))
    assert deployed.returncode == 0, deployed.stderr
    assert os.readlink(ops / "pods/web/frontend/current") == "1.2.0"

    other = allowed_signers(tmp_path / "other_signers", ("someone@example.com", make_key(tmp_path / "keys", "x"), ""))
    refused = deploy(tmp_path / "ops2", url, registry.env(prefix), "--allowed-signers", str(other))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "signed by an unknown key" in refused.stderr
    assert not (tmp_path / "ops2" / "pods").exists()


def test_a_key_set_after_the_push_signs_the_pod_and_pushes_its_signature_under_its_own_tag(tmp_path, registry):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    key = make_key(tmp_path / "keys", "release")
    root = copy_example(tmp_path / "runner")
    doit(root, env=registry.env(prefix), check=True)  # pushed unsigned
    signing = {**registry.env(prefix), "PODRELEASE_SIGNING_KEY": str(key), "SSH_AUTH_SOCK": ""}
    doit(root, env=signing, check=True)
    assert (root / "channels/staging/web/frontend/1.2.0/pod.json.sig").is_file()
    assert "_sig.1.2.0" in registry.tags(f"{prefix}/channels/staging/web/frontend")
    assert executed(doit(root, env=signing, check=True)) == []  # nothing left to do
    verified = doit(root, "verify", "--strict", env=registry.env(prefix))
    assert verified.returncode == 0, verified.stdout


def test_a_host_deploying_from_the_registry_gets_a_signature_added_after_the_push(tmp_path, registry, ops):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    key = make_key(tmp_path / "keys", "release")
    signers = allowed_signers(tmp_path / "allowed_signers", ("release@example.com", key, ""))
    root = copy_example(tmp_path / "runner")
    doit(root, env=registry.env(prefix), check=True)
    doit(root, env={**registry.env(prefix), "PODRELEASE_SIGNING_KEY": str(key), "SSH_AUTH_SOCK": ""}, check=True)
    url = f"oci://{registry.host}/{prefix}/channels/staging/web/frontend:tip"
    deployed = deploy(ops, url, registry.env(prefix), "--allowed-signers", str(signers))
    assert deployed.returncode == 0, deployed.stderr


def test_a_fresh_runner_bundles_a_pod_with_the_signature_added_after_its_push(tmp_path, registry):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    key = make_key(tmp_path / "keys", "release")
    a = copy_example(tmp_path / "a")
    doit(a, env=registry.env(prefix), check=True)
    doit(a, env={**registry.env(prefix), "PODRELEASE_SIGNING_KEY": str(key), "SSH_AUTH_SOCK": ""}, check=True)
    b = copy_example(tmp_path / "b")
    doit(b, "bundle:staging/web/frontend/1.2.0", env=registry.env(prefix), check=True)
    signature = "channels/staging/web/frontend/1.2.0/pod.json.sig"
    assert (b / signature).read_bytes() == (a / signature).read_bytes()
    assert (b / "bundles/staging/web/frontend/1.2.0/pod.json.sig").read_bytes() == (a / signature).read_bytes()


def test_a_signature_is_not_pushed_for_a_pod_the_registry_holds_other_content_for(tmp_path, registry):
    prefix = f"t{uuid.uuid4().hex[:12]}"
    key = make_key(tmp_path / "keys", "release")
    root = copy_example(tmp_path / "runner")
    doit(root, env=registry.env(prefix), check=True)
    pods = f"docker://{registry.host}/{prefix}/channels/staging/web/frontend"
    registry.skopeo("copy", "--preserve-digests", f"{pods}:1.0.0", f"{pods}:1.2.0")  # overwritten behind our back
    failed = doit(root, env={**registry.env(prefix), "PODRELEASE_SIGNING_KEY": str(key), "SSH_AUTH_SOCK": ""})
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    assert "not the pod signed here" in failed.stdout + failed.stderr
    assert "_sig.1.2.0" not in registry.tags(f"{prefix}/channels/staging/web/frontend")
