"""`doit verify` with a registry: every image and pod version on disk is in the registry, as it is here."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import copy_example, doit

pytestmark = pytest.mark.slow

FRONTEND_IMAGE = "images/web/frontend/1.1.0"


@pytest.fixture
def prefix() -> str:
    return f"v{uuid.uuid4().hex[:12]}"


def registry_lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if "registry" in line and not line.startswith(("OK", "verify"))]


def test_verify_is_clean_when_the_registry_holds_what_the_root_released(tmp_path, registry, prefix):
    root = copy_example(tmp_path / "root")
    doit(root, env=registry.env(prefix), check=True)
    result = doit(root, "verify", "--strict", env=registry.env(prefix))
    assert result.returncode == 0, result.stdout
    assert registry_lines(result) == []


def test_verify_warns_about_versions_not_pushed_yet(tmp_path, registry, prefix):
    root = copy_example(tmp_path / "root")
    doit(root, env={"PODRELEASE_REGISTRY": ""}, check=True)
    result = doit(root, "verify", env=registry.env(prefix))
    assert result.returncode == 0, result.stdout
    warnings = registry_lines(result)
    assert warnings and all("warning: not in the registry yet" in line for line in warnings)
    assert any(line.startswith(f"{FRONTEND_IMAGE}: ") for line in warnings)


def test_verify_names_both_digests_of_a_tag_overwritten_in_the_registry(tmp_path, registry, prefix):
    root = copy_example(tmp_path / "root")
    doit(root, env=registry.env(prefix), check=True)
    other = root / "images/web/logship/1.2.0/oci"
    registry.skopeo("copy", "--preserve-digests", f"oci:{other}:1.2.0",
                    f"docker://{registry.host}/{prefix}/images/web/frontend:1.1.0")
    result = doit(root, "verify", env=registry.env(prefix))
    assert result.returncode == 1
    [line] = [line for line in registry_lines(result) if "overwritten" in line]
    assert line.startswith(f"{FRONTEND_IMAGE}: the registry holds sha256:") and line.count("sha256:") == 2


def test_verify_says_in_one_line_that_an_unreachable_registry_cannot_be_checked(tmp_path, registry, prefix):
    root = copy_example(tmp_path / "root")
    doit(root, env={"PODRELEASE_REGISTRY": ""}, check=True)
    result = doit(root, "verify", env={**registry.env(prefix), "PODRELEASE_REGISTRY": f"127.0.0.1:9/{prefix}"})
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    [line] = registry_lines(result)
    assert "cannot be checked" in line and "unreachable" in line


def test_verify_with_an_empty_registry_setting_checks_the_disk_alone(tmp_path, registry, prefix):
    root = copy_example(tmp_path / "root")
    doit(root, env={"PODRELEASE_REGISTRY": ""}, check=True)
    result = doit(root, "verify", "--strict", env={**registry.env(prefix), "PODRELEASE_REGISTRY": ""})
    assert result.returncode == 0 and registry_lines(result) == []


def test_a_pod_changed_on_disk_after_its_push_differs_from_the_registry(tmp_path, registry, prefix):
    root = copy_example(tmp_path / "root")
    doit(root, env=registry.env(prefix), check=True)
    pod_dir = next(p for p in sorted(Path(root, "channels").rglob("pod.json"))).parent
    (pod_dir / "pod.json").write_bytes((pod_dir / "pod.json").read_bytes() + b" ")
    result = doit(root, "verify", env=registry.env(prefix))
    assert any(line.startswith(f"{pod_dir.relative_to(root)}: the registry holds") for line in registry_lines(result))


def test_a_pod_yanked_before_it_was_pushed_and_the_images_only_it_names_are_no_warning(tmp_path, registry, prefix):
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
