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

from conftest import copy_example, doit
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
