"""Review: `doit verify` with a registry must not warn forever about what doit never pushes."""

from __future__ import annotations

import uuid

import pytest

from conftest import copy_example, doit

pytestmark = pytest.mark.slow


def test_a_pod_yanked_before_it_was_pushed_is_no_warning(tmp_path, registry):
    prefix = f"v{uuid.uuid4().hex[:12]}"
    root = copy_example(tmp_path / "root")
    doit(root, env={"PODRELEASE_REGISTRY": ""}, check=True)
    instruction = root / "channels/staging/web/frontend/1.0.0.yaml"
    instruction.write_text(instruction.read_text() + "yanked: true\nreason: broken\n")
    doit(root, env=registry.env(prefix), check=True)  # pushes every release but the yanked one
    result = doit(root, "verify", "--strict", env=registry.env(prefix))
    lines = [line for line in result.stdout.splitlines() if "registry" in line and not line.startswith(("OK", "verify"))]
    # the next doit does not push it: it is yanked; with --strict this fails every run, forever
    assert not [line for line in lines if line.startswith("channels/staging/web/frontend/1.0.0")], lines
    assert result.returncode == 0, result.stdout
