"""Releasing through a registry that asks for Bearer tokens (as Docker Hub, GitLab or Harbor do), end to end.

The same real doit and ops-onboard command lines as test_registry_release.py, against
docker-registry with `auth: token` and the token server of tests/registrytoken.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from conftest import copy_example, doit, executed
from registrytoken import TokenRegistry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    served = TokenRegistry(tmp_path_factory.mktemp("token-registry"))
    yield served
    served.close()


def env_for(registry: TokenRegistry, prefix: str) -> dict[str, str]:
    return {**registry.env(), "PODRELEASE_REGISTRY": f"{registry.host}/{prefix}"}


def test_a_fresh_runner_builds_nothing_from_a_registry_asking_for_tokens(tmp_path, token_registry):
    prefix = f"k{uuid.uuid4().hex[:12]}"
    a = copy_example(tmp_path / "a")
    doit(a, env=env_for(token_registry, prefix), check=True)
    b = copy_example(tmp_path / "b")
    again = doit(b, env=env_for(token_registry, prefix), check=True)
    assert [task for task in executed(again) if task.startswith(("image:", "pod:"))] == []
    assert doit(b, "verify", "--strict", env=env_for(token_registry, prefix)).returncode == 0
    bundled = doit(b, "bundle:staging/web/frontend/1.2.0", env=env_for(token_registry, prefix), check=True)
    assert "bundle:staging/web/frontend/1.2.0" in executed(bundled)
    assert (b / "images/web/frontend/1.1.0/image.aci").read_bytes() == (a / "images/web/frontend/1.1.0/image.aci").read_bytes()


def test_a_host_deploys_the_tip_from_a_registry_asking_for_tokens(tmp_path, token_registry):
    prefix = f"k{uuid.uuid4().hex[:12]}"
    a = copy_example(tmp_path / "a")
    doit(a, env=env_for(token_registry, prefix), check=True)
    url = f"oci://{token_registry.host}/{prefix}/channels/staging/web/frontend:tip"
    env = {**os.environ, **token_registry.env(), "OPS_ONBOARD_NO_START": "1"}
    deployed = subprocess.run([sys.executable, "-m", "podrelease.deploy.cli", "--root", str(tmp_path / "ops"), "deploy", url],
                              env=env, capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stderr
    assert os.readlink(tmp_path / "ops/pods/web/frontend/current") == "1.2.0"
