"""OCI image layouts (podrelease.build.oci): deterministic, strict to read, usable by real tools."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from podrelease.build import archive, oci
from podrelease.build.archive import Entry, sort_key, write_tar
from podrelease.core.errors import ContractError
from podrelease.model.rules import App, Port

VERSION = "1.2.0"
IMAGE_ID = "sha512-" + hashlib.sha512(b"an image").hexdigest()
CONFIG = oci.OciConfig(
    architecture="amd64",
    os="linux",
    labels=((oci.IMAGE_ID_LABEL, IMAGE_ID),),
    entrypoint=("/bin/busybox", "echo"),
    env=(("PATH", "/bin"), ("GREETING", "hi there")),
    working_dir="/srv",
    exposed_ports=("8080/tcp",),
)
TOOL_TIMEOUT = 60


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    """A tiny runnable root: static busybox, /bin/sh -> busybox, files and dirs with unusual modes."""
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    shutil.copyfile("/bin/busybox", root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    os.symlink("busybox", root / "bin" / "sh")
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("hello from podrelease\n")
    os.chmod(root / "etc" / "motd", 0o640)
    (root / "srv").mkdir()
    os.chmod(root / "srv", 0o750)
    (root / "srv" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "srv" / "run.sh", 0o700)
    return root


def rootfs_entries(root: Path) -> list[Entry]:
    """The layer's entries, as the image builder gives them: sorted names, modes from the files."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            status = os.lstat(full)
            if stat.S_ISLNK(status.st_mode):
                entries.append(Entry(rel, "symlink", 0o777, linkname=os.readlink(full)))
            elif stat.S_ISDIR(status.st_mode):
                entries.append(Entry(rel, "dir", stat.S_IMODE(status.st_mode)))
            else:
                entries.append(Entry(rel, "file", stat.S_IMODE(status.st_mode), source=str(full)))
    return sorted(entries, key=lambda entry: sort_key(entry.name))


def build_layout(directory: Path, root: Path, config: oci.OciConfig = CONFIG, version: str = VERSION) -> str:
    with oci.LayerSink(directory) as sink:
        write_tar(rootfs_entries(root), sink)
    return oci.write_layout(directory, sink, config, version)


def blob(directory: Path, digest: str) -> bytes:
    return (directory / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def tree_modes(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): stat.S_IMODE(path.lstat().st_mode)
        for path in directory.rglob("*")
    }


@pytest.fixture(scope="module")
def layout(rootfs, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("image") / "oci"
    build_layout(directory, rootfs)
    return directory


# -- determinism and atomicity -----------------------------------------------------


def test_digest_does_not_depend_on_directory_or_umask(rootfs, tmp_path):
    with umask(0o077):
        strict = build_layout(tmp_path / "a" / "oci", rootfs)
    with umask(0o022):
        usual = build_layout(tmp_path / "b" / "oci", rootfs)
    assert strict == usual


def test_digest_does_not_depend_on_gzip_workers(rootfs, tmp_path, monkeypatch):
    digests = []
    for workers in (1, 2):
        monkeypatch.setattr(archive, "default_workers", lambda workers=workers: workers)
        digests.append(build_layout(tmp_path / str(workers), rootfs))
    assert digests[0] == digests[1]


def test_files_are_0644_and_directories_0755_whatever_the_umask(rootfs, tmp_path):
    with umask(0o077):
        build_layout(tmp_path / "oci", rootfs)
    modes = tree_modes(tmp_path / "oci")
    assert {mode for name, mode in modes.items() if (tmp_path / "oci" / name).is_dir()} == {0o755}
    assert {mode for name, mode in modes.items() if not (tmp_path / "oci" / name).is_dir()} == {0o644}


def test_layout_holds_only_its_blobs_and_no_temporaries(layout):
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]))
    named = {d["digest"].removeprefix("sha256:") for d in [index["manifests"][0], manifest["config"], *manifest["layers"]]}
    assert sorted(os.listdir(layout)) == ["blobs", "index.json", "oci-layout"]
    assert set(os.listdir(layout / "blobs" / "sha256")) == named


def test_aborted_sink_leaves_no_blob(tmp_path):
    with pytest.raises(RuntimeError):
        with oci.LayerSink(tmp_path / "oci") as sink:
            sink.write(b"x" * 1000)
            raise RuntimeError("the build failed")
    assert os.listdir(tmp_path / "oci" / "blobs" / "sha256") == []


# -- what is written ------------------------------------------------------------------


def test_index_tags_one_manifest_with_the_version(layout):
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"] for m in index["manifests"]] == [{oci.REF_NAME: VERSION}]
    assert oci.manifest_digest(layout, VERSION) == index["manifests"][0]["digest"]


def test_json_is_canonical(layout):
    for path in [layout / "index.json", layout / "oci-layout"]:
        text = path.read_bytes()
        assert text == oci.canonical_json(json.loads(text))


def test_diff_id_is_sha256_of_the_uncompressed_tar(layout, rootfs):
    plain = io.BytesIO()
    write_tar(rootfs_entries(rootfs), plain)
    manifest = json.loads(blob(layout, oci.manifest_digest(layout, VERSION)))
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(plain.getvalue()).hexdigest()]}
    assert manifest["layers"][0]["mediaType"] == oci.MEDIA_LAYER_GZIP


def test_config_has_no_timestamps(layout):
    manifest = json.loads(blob(layout, oci.manifest_digest(layout, VERSION)))
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert "created" not in config and "history" not in config
    assert config["config"] == {
        "Entrypoint": ["/bin/busybox", "echo"],
        "Env": ["PATH=/bin", "GREETING=hi there"],
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {oci.IMAGE_ID_LABEL: IMAGE_ID},
        "User": "0:0",
        "WorkingDir": "/srv",
    }


def test_uncompressed_layer_is_the_tar_itself(rootfs, tmp_path):
    directory = tmp_path / "oci"
    with oci.LayerSink(directory, oci.UNCOMPRESSED) as sink:
        write_tar(rootfs_entries(rootfs), sink)
    digest = oci.write_layout(directory, sink, CONFIG, VERSION)
    assert sink.layer.digest == sink.layer.diff_id
    assert oci.manifest_digest(directory, VERSION, check_layers=True) == digest


def test_config_from_appc_app():
    app = App(
        exec=("/bin/server", "--port", "8080"),
        user="/etc/owner",
        group="100",
        environment=(("A", "1"),),
        ports=(Port("http", "tcp", 8080, count=2), Port("dns", "udp", 53)),
    )
    config = oci.OciConfig.from_app(app, os="linux", arch="aarch64", image_id=IMAGE_ID)
    assert (config.architecture, config.variant) == ("arm64", None)
    assert config.user == "0:100"
    assert config.exposed_ports == ("53/udp", "8080/tcp", "8081/tcp")
    assert config.entrypoint == ("/bin/server", "--port", "8080")


def test_config_requires_the_image_id_label():
    with pytest.raises(ValueError, match=oci.IMAGE_ID_LABEL):
        oci.OciConfig("amd64", "linux", labels=(("other", "x"),))


# -- reading back ---------------------------------------------------------------------


def test_manifest_digest_checks_layers_on_request(layout):
    assert oci.manifest_digest(layout, VERSION, check_layers=True) == oci.manifest_digest(layout, VERSION)


def blob_path(directory: Path, kind: str) -> Path:
    """The file of the layout's manifest, config or layer blob."""
    manifest_digest = json.loads((directory / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads(blob(directory, manifest_digest))
    digest = {"manifest": manifest_digest, "config": manifest["config"]["digest"], "layer": manifest["layers"][0]["digest"]}[kind]
    return directory / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _blob_changed(kind: str):
    def corrupt(directory: Path) -> None:
        path = blob_path(directory, kind)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1  # same size, other content
        path.write_bytes(bytes(data))
    return corrupt


def _rewrite_index(change):
    def corrupt(directory: Path) -> None:
        index = json.loads((directory / "index.json").read_text())
        change(index)
        (directory / "index.json").write_text(json.dumps(index))
    return corrupt


MALFORMED = {
    "no oci-layout": lambda d: (d / "oci-layout").unlink(),
    "index not json": lambda d: (d / "index.json").write_text("{"),
    "index a list": lambda d: (d / "index.json").write_text("[]"),
    "untagged": _rewrite_index(lambda i: i["manifests"][0].pop("annotations")),
    "tagged twice": _rewrite_index(lambda i: i["manifests"].append(i["manifests"][0])),
    "bad digest": _rewrite_index(lambda i: i["manifests"][0].update(digest="sha256:../../x")),
    "size a string": _rewrite_index(lambda i: i["manifests"][0].update(size="12")),
    "manifest changed": _blob_changed("manifest"),
    "config changed": _blob_changed("config"),
    "layer missing": lambda d: blob_path(d, "layer").unlink(),
    "layer changed": _blob_changed("layer"),
}


@pytest.mark.parametrize("damage", MALFORMED, ids=list(MALFORMED))
def test_malformed_layout_is_a_one_line_contract_error(damage, rootfs, tmp_path):
    directory = tmp_path / "oci"
    build_layout(directory, rootfs)
    MALFORMED[damage](directory)
    with pytest.raises(ContractError) as error:
        oci.manifest_digest(directory, VERSION, check_layers=True)
    assert "\n" not in str(error.value)


# -- real tools ---------------------------------------------------------------------------


def test_skopeo_inspect_shows_label_and_entrypoint(layout):
    needs("skopeo")
    result = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:{VERSION}"],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)["config"]
    assert config["Labels"][oci.IMAGE_ID_LABEL] == IMAGE_ID
    assert config["Entrypoint"] == ["/bin/busybox", "echo"]
    inspected = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:{VERSION}"], capture_output=True, text=True, timeout=TOOL_TIMEOUT
    )
    assert json.loads(inspected.stdout)["Digest"] == oci.manifest_digest(layout, VERSION)


def test_umoci_unpacks_files_with_their_modes(layout, rootfs, tmp_path):
    needs("umoci")
    bundle = tmp_path / "bundle"
    result = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:{VERSION}", str(bundle)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    unpacked = bundle / "rootfs"
    assert os.readlink(unpacked / "bin" / "sh") == "busybox"
    assert (unpacked / "etc" / "motd").read_text() == "hello from podrelease\n"
    expected = {name: mode for name, mode in tree_modes(rootfs).items() if not (rootfs / name).is_symlink()}
    got = {name: mode for name, mode in tree_modes(unpacked).items() if not (unpacked / name).is_symlink()}
    assert got == expected


@pytest.fixture
def podman(tmp_path):
    """`podman` with a private store, and settings that let it run containers on this machine.

    As root in this sandbox, runc cannot raise RLIMIT_NOFILE to podman's
    default ulimits, and there is no systemd for the cgroup manager or the
    event journal. The runroot goes in a short /tmp path: podman refuses one
    longer than 50 characters (it holds unix sockets).
    """
    needs("podman")
    needs("runc")
    conf = tmp_path / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = []\n'
        '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    runroot = tempfile.mkdtemp(prefix="podman-run-")  # podman refuses a runroot longer than 50 characters
    base = ["podman", "--root", str(tmp_path / "root"), "--runroot", runroot]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT)

    yield run
    run("rmi", "--all", "--force")
    shutil.rmtree(runroot, ignore_errors=True)


def test_podman_runs_the_image(podman, layout):
    result = podman("run", "--rm", f"oci:{layout}:{VERSION}", "hi")  # the entrypoint is `busybox echo`
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_podman_sees_config_from_the_layout(podman, layout):
    result = podman("run", "--rm", "--entrypoint", "/bin/sh", f"oci:{layout}:{VERSION}", "-c", 'echo "$GREETING in $PWD"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi there in /srv\n"
