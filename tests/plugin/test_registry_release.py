"""A registry as the shared release store, driven through the real doit (and ops-onboard) command lines.

Each test has its own prefix in one real docker-registry (tests/registryhelpers.py),
so runners of different tests never see each other's artifacts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from conftest import copy_example, doit, executed
from instructing import instruct, tip
from registryhelpers import PASSWORD, DyingProxy

# each test starts runners that build the example: slow (CI runs them with `pytest -m slow`)
pytestmark = pytest.mark.slow

POD = "channels/staging/web/frontend/1.2.0"
FRONTEND = "images/web/frontend/1.1.0"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def runner(tmp_path: Path, name: str) -> Path:
    """A fresh checkout of the example release root: sources only, nothing built."""
    return copy_example(tmp_path / name)


def built(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "images").glob("*/*/*") if (p / "sha512").is_file()) \
        if (root / "images").exists() else []


def tree_bytes(folder: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(folder))] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return found


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    return "\n".join(lines)


def test_a_runner_pushes_everything_it_releases(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    assert registry.tags(f"{prefix}/images/web/frontend") >= {"1.0.0", "1.1.0"}
    assert registry.tags(f"{prefix}/channels/staging/web/frontend") == {"1.0.0", "1.2.0", "tip"}
    assert registry.tags(f"{prefix}/volumes/web/static") == {"1.0.0"}
    assert registry.digest(f"{prefix}/channels/staging/web/frontend", "tip") == \
        registry.digest(f"{prefix}/channels/staging/web/frontend", "1.2.0")


def test_a_pushed_image_runs_under_podman_from_its_version_tag(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    conf = tmp_path / "containers.conf"  # as tests/deploy/podmanhelpers.py runs podman on these machines
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\nruntime = "runc"\n')
    store = Path(tempfile.mkdtemp(prefix="pr", dir="/tmp"))  # a short --runroot: socket paths are short
    try:
        ran = subprocess.run(
            ["podman", "--root", str(store / "r"), "--runroot", str(store / "rr"), "run", "--rm", "--entrypoint", "/bin/busybox",
             f"{registry.host}/{prefix}/images/web/logship:1.2.0", "echo", "ran from the registry"],
            env={**os.environ, **registry.env(prefix), "CONTAINERS_CONF": str(conf)},
            capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["podman", "--root", str(store / "r"), "--runroot", str(store / "rr"), "system", "reset", "--force"],
                       capture_output=True, timeout=120, env={**os.environ, "CONTAINERS_CONF": str(conf)})
        shutil.rmtree(store, ignore_errors=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "ran from the registry"


def test_a_fresh_runner_builds_nothing_and_sees_everything_released(tmp_path, registry, prefix):
    doit(runner(tmp_path, "a"), env=registry.env(prefix), check=True)
    b = runner(tmp_path, "b")
    result = doit(b, env=registry.env(prefix), check=True)
    assert executed(result) == []
    assert built(b) == []
    listed = doit(b, "list", env=registry.env(prefix), check=True).stdout
    releases = [line for line in listed.splitlines() if "release:" in line]
    assert releases and all(line.startswith("U ") for line in releases)
    assert doit(b, "verify", env=registry.env(prefix)).returncode == 0


def test_a_fresh_runner_restores_a_pod_bit_for_bit_when_it_bundles_it(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    b = runner(tmp_path, "b")
    doit(b, f"bundle:{POD.removeprefix('channels/')}", env=registry.env(prefix), check=True)
    assert tree_bytes(b / POD) == tree_bytes(a / POD)
    assert tree_bytes(b / FRONTEND) == tree_bytes(a / FRONTEND)
    assert tree_bytes(b / "volumes/web/static/1.0.0") == tree_bytes(a / "volumes/web/static/1.0.0")
    assert tip(b, Path("channels/staging/web/frontend")) == "1.2.0"
    assert doit(b, "verify", env=registry.env(prefix)).returncode == 0


def test_a_new_version_from_one_runner_reaches_another_without_a_build(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    b = runner(tmp_path, "b")
    instruct(b, "1.3.0")  # prod frontend 1.3.0, images and volume already released
    first = doit(b, env=registry.env(prefix), check=True)
    assert [t for t in executed(first) if t.startswith("image:")] == []
    assert "pod:prod/web/frontend/1.3.0" in executed(first)
    assert tree_bytes(b / FRONTEND) == tree_bytes(a / FRONTEND)  # restored, to be linked
    instruct(a, "1.3.0")
    second = doit(a, env=registry.env(prefix), check=True)
    assert [t for t in executed(second) if not t.startswith("release:")] == []
    assert registry.digest(f"{prefix}/channels/prod/web/frontend", "tip") == \
        registry.digest(f"{prefix}/channels/prod/web/frontend", "1.3.0")


def test_a_fresh_runner_builds_only_the_new_image_and_pushes_it(tmp_path, registry, prefix):
    doit(runner(tmp_path, "a"), env=registry.env(prefix), check=True)
    b = runner(tmp_path, "b")
    instruct(b, "1.3.0", "images: {//web:frontend: 1.3.0, //web:logship: 1.1.0}\nvolumes: {//web:static: 1.0.0}\n")
    result = doit(b, env=registry.env(prefix), check=True)
    assert [t for t in executed(result) if t.startswith("image:")] == ["image:web/frontend/1.3.0"]
    assert "1.3.0" in registry.tags(f"{prefix}/images/web/frontend")


def test_racing_runners_both_succeed_and_agree_on_every_digest(tmp_path, registry, prefix):
    roots = [runner(tmp_path, name) for name in ("a", "b")]
    env = {**os.environ, **registry.env(prefix)}
    racers = [subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for root in roots]
    outcomes = [racer.communicate(timeout=600) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outcomes
    for image in ("web/frontend/1.1.0", "web/logship/1.2.0", "infra/db/pg/1.10.0"):
        assert (roots[0] / "images" / image / "sha512").read_bytes() == (roots[1] / "images" / image / "sha512").read_bytes()
    pods = f"{prefix}/channels/staging/web/frontend"
    assert registry.digest(pods, "tip") == registry.digest(pods, "1.2.0")


def test_the_tip_tag_ends_at_the_highest_version_whichever_runner_finishes_last(tmp_path, registry, prefix):
    a, b = runner(tmp_path, "a"), runner(tmp_path, "b")
    doit(a, env=registry.env(prefix), check=True)
    instruct(a, "1.3.0")
    instruct(b, "1.4.0")
    env = {**os.environ, **registry.env(prefix)}
    racers = [subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for root in (a, b)]
    outcomes = [racer.communicate(timeout=600) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outcomes
    pods = f"{prefix}/channels/prod/web/frontend"
    assert registry.digest(pods, "tip") == registry.digest(pods, "1.4.0")
    doit(a, env=registry.env(prefix), check=True)  # a runner that knew only 1.3.0 leaves tip alone
    assert registry.digest(pods, "tip") == registry.digest(pods, "1.4.0")


def test_wrong_credentials_are_one_line_and_write_nothing(tmp_path, registry, prefix):
    wrong = tmp_path / "auth.json"
    wrong.write_text(json.dumps({"auths": {registry.host: {"auth": "Y2k6bm9wZQ=="}}}))  # ci:nope
    b = runner(tmp_path, "b")
    result = doit(b, env=registry.env(prefix, auth_file=wrong))
    message = one_line_error(result)
    assert "refused our credentials" in message and len(message.splitlines()) == 1
    assert not (b / "images").exists() and not (b / ".doit.db").exists()
    assert PASSWORD not in result.stderr


def test_an_unreachable_registry_is_one_line(tmp_path, registry, prefix):
    b = runner(tmp_path, "b")
    env = {**registry.env(prefix), "PODRELEASE_REGISTRY": f"127.0.0.1:9/{prefix}"}
    message = one_line_error(doit(b, env=env))
    assert "unreachable" in message and len(message.splitlines()) == 1


def test_a_registry_that_dies_mid_push_leaves_nothing_finished_and_the_next_run_completes(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    proxy = DyingProxy(registry.port, limit=600_000)
    registry.allow(proxy.host)
    failed = doit(a, env=registry.env(prefix, host=proxy.host))
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert proxy.dead.is_set()
    assert "1.2.0" not in registry.tags(f"{prefix}/channels/staging/web/frontend")
    built_before = {f"image:{name.removeprefix('images/')}" for name in built(a)}
    assert built_before
    done = doit(a, env=registry.env(prefix), check=True)
    assert built_before.isdisjoint(executed(done))  # built once, pushed now
    assert registry.tags(f"{prefix}/channels/staging/web/frontend") == {"1.0.0", "1.2.0", "tip"}
    b = runner(tmp_path, "b")
    doit(b, f"bundle:{POD.removeprefix('channels/')}", env=registry.env(prefix), check=True)
    assert tree_bytes(b / FRONTEND) == tree_bytes(a / FRONTEND)


def test_a_tag_overwritten_behind_our_back_is_refused_on_restore(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    other = a / "images/web/logship/1.2.0/oci"
    registry.skopeo("copy", "--preserve-digests", f"oci:{other}:1.2.0",
                    f"docker://{registry.host}/{prefix}/images/web/frontend:1.1.0")
    b = runner(tmp_path, "b")
    result = doit(b, f"bundle:{POD.removeprefix('channels/')}", env=registry.env(prefix))
    message = one_line_error(result)
    assert "overwritten" in message and "sha256:" in message
    assert not (b / FRONTEND).exists() and not (b / POD).exists()


def test_different_content_under_a_pushed_version_is_refused_naming_both_digests(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    b = runner(tmp_path, "b")
    (b / "shipyard/web/conf/frontend.conf").write_text("port 8081\n")  # other content under a pushed version
    instruct(b, "1.3.0", "images: {//web:frontend: 1.0.0, //web:logship: 1.1.0}\nvolumes: {//web:static: 1.0.0}\n")
    doit(b, "image:web/frontend/1.0.0", env={"PODRELEASE_REGISTRY": ""}, check=True)  # built here, unknown to the registry
    result = doit(b, "release:prod/web/frontend/1.3.0", env=registry.env(prefix))
    message = one_line_error(result)
    assert "immutable" in message and message.count("sha256:") >= 2


def test_a_host_deploys_the_tip_from_the_registry_alone(tmp_path, registry, prefix, ops):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    url = f"oci://{registry.host}/{prefix}/channels/staging/web/frontend:tip"
    env = {**os.environ, **registry.env(prefix), "OPS_ONBOARD_NO_START": "1"}
    deployed = subprocess.run([sys.executable, "-m", "podrelease.deploy.cli", "--root", str(ops), "deploy", url],
                              env=env, capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stderr
    assert "1.2.0" in deployed.stdout
    assert os.readlink(ops / "pods/web/frontend/current") == "1.2.0"
    verified = subprocess.run([sys.executable, "-m", "podrelease.deploy.cli", "--root", str(ops), "verify"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_volume_create_pushes_the_new_volume_and_a_release_elsewhere_accepts_it(tmp_path, registry, prefix):
    a = runner(tmp_path, "a")
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text("v2\n")
    created = doit(a, "volume-create", "//web:static@2.0.0", str(tmp_path / "static"), env=registry.env(prefix), check=True)
    assert "pushed" in created.stdout
    assert registry.tags(f"{prefix}/volumes/web/static") == {"2.0.0"}
    b = runner(tmp_path, "b")
    instruct(b, "1.3.0", "images: {//web:frontend: 1.1.0, //web:logship: 1.1.0}\nvolumes: {//web:static: 2.0.0}\n")
    doit(b, "release:prod/web/frontend/1.3.0", env=registry.env(prefix), check=True)
    assert (b / "volumes/web/static/2.0.0/static.tar.gz").read_bytes() == (a / "volumes/web/static/2.0.0/static.tar.gz").read_bytes()


def test_volume_create_refuses_a_version_the_registry_already_holds(tmp_path, registry, prefix):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text("v2\n")
    doit(runner(tmp_path, "a"), "volume-create", "//web:static@2.0.0", str(tmp_path / "static"), env=registry.env(prefix), check=True)
    b = runner(tmp_path, "b")
    result = doit(b, "volume-create", "//web:static@2.0.0", str(tmp_path / "static"), env=registry.env(prefix))
    assert "already in the registry" in one_line_error(result)
    assert not (b / "volumes/web/static/2.0.0").exists()


def test_yanking_every_version_withdraws_the_registry_tip_and_a_host_deploying_it_gets_one_line(tmp_path, registry, prefix, ops):
    a = runner(tmp_path, "a")
    doit(a, env=registry.env(prefix), check=True)
    pods = f"{prefix}/channels/staging/web/frontend"
    home = a / "channels/staging/web/frontend"
    released = {version: (home / f"{version}.yaml").read_text() for version in ("1.0.0", "1.2.0")}
    for version in released:
        (home / f"{version}.yaml").write_text("yanked: true\nreason: leaks memory\n")
    doit(a, env=registry.env(prefix), check=True)
    assert registry.digest(pods, "tip") not in {registry.digest(pods, version) for version in released}
    assert executed(doit(a, env=registry.env(prefix), check=True)) == []

    url = f"oci://{registry.host}/{pods}:tip"
    env = {**os.environ, **registry.env(prefix), "OPS_ONBOARD_NO_START": "1"}
    refused = subprocess.run([sys.executable, "-m", "podrelease.deploy.cli", "--root", str(ops), "deploy", url],
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "every version of this pod is yanked" in refused.stderr

    (home / "1.2.0.yaml").write_text(released["1.2.0"])
    doit(a, env=registry.env(prefix), check=True)
    assert registry.digest(pods, "tip") == registry.digest(pods, "1.2.0")
