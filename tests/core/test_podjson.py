"""Reading pod.json strictly (podrelease.core.podjson), on hand-made documents."""

from __future__ import annotations

import copy
import json
import os

import pytest

from podrelease.core.errors import PodJsonError
from podrelease.core.names import Label
from podrelease.core.podjson import MAX_POD_JSON, Pin, parse_pod_json, read_pod_json

IMAGE_ID = "sha512-" + "a" * 128
ACI_SHA512 = "d" * 128
TARBALL_SHA512 = "b" * 128
CONF_SHA512 = "c" * 128

# The shape podrelease.build.assembly.pod_json writes.
GOOD = {
    "name": "//web:frontend",
    "version": "1.2.0",
    "channel": "prod",
    "revision": "9c35becf47fd",
    "images": [
        {"label": "//web:frontend", "name": "frontend", "version": "1.1.0", "id": IMAGE_ID, "path": "frontend/image.aci",
         "aci": {"sha512": ACI_SHA512, "size": 6190112}},
    ],
    "volumes": [
        {
            "label": "//web:static",
            "name": "static",
            "version": "1.0.0",
            "files": [{"path": "static/site.tar.gz", "sha512": TARBALL_SHA512, "size": 40960}],
        },
    ],
    "files": [{"path": "frontend.conf", "sha512": CONF_SHA512, "size": 312}],
    "manifest": {
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [{"name": "frontend", "image": {"name": "web/frontend", "id": IMAGE_ID}}],
        "volumes": [{"name": "static", "kind": "host"}],
    },
}


def encoded(doc: dict) -> bytes:
    return json.dumps(doc, indent=2).encode()


def changed(edit) -> bytes:
    doc = copy.deepcopy(GOOD)
    edit(doc)
    return encoded(doc)


def refusal(data: bytes) -> PodJsonError:
    with pytest.raises(PodJsonError) as raised:
        parse_pod_json(data, "bundle/pod.json")
    return raised.value


# ---------------------------------------------------------------- parse_pod_json


def test_a_good_pod_json_is_read_with_its_values():
    pod = parse_pod_json(encoded(GOOD), "bundle/pod.json")
    assert (pod.label, pod.version, pod.channel, pod.revision) == (Label("web", "frontend"), "1.2.0", "prod", "9c35becf47fd")
    assert [(i.name, i.version, i.id, i.path) for i in pod.images] == [("frontend", "1.1.0", IMAGE_ID, "frontend/image.aci")]
    assert [(v.name, [f.path for f in v.files]) for v in pod.volumes] == [("static", ["static/site.tar.gz"])]
    assert [(f.path, f.sha512, f.size) for f in pod.files] == [("frontend.conf", CONF_SHA512, 312)]


def test_a_good_pod_json_pins_every_file_it_names_but_the_sha512_files():
    pod = parse_pod_json(encoded(GOOD), "bundle/pod.json")
    assert pod.pins() == {
        "frontend/image.aci": Pin(ACI_SHA512, 6190112),
        "static/site.tar.gz": Pin(TARBALL_SHA512, 40960),
        "frontend.conf": Pin(CONF_SHA512, 312),
    }


def test_a_good_pod_json_keeps_the_bytes_it_was_read_from():
    data = encoded(GOOD)
    assert parse_pod_json(data, "bundle/pod.json").raw == data


def test_a_good_pod_json_lists_every_artifact_path_once():
    pod = parse_pod_json(encoded(GOOD), "bundle/pod.json")
    assert pod.artifact_paths() == ["frontend/image.aci", "frontend/sha512", "static/site.tar.gz", "frontend.conf"]


def test_a_pod_json_without_a_revision_is_read():
    assert parse_pod_json(changed(lambda d: d.update(revision=None)), "pod.json").revision is None


def test_a_missing_top_key_is_refused():
    error = refusal(changed(lambda d: d.pop("channel")))
    assert str(error) == "bundle/pod.json: pod.json: missing key 'channel'"
    assert error.kind == "shape"


def test_a_missing_image_key_is_refused():
    error = refusal(changed(lambda d: d["images"][0].pop("id")))
    assert error.problem == "images[0]: missing key 'id'"


def test_an_unknown_top_key_is_refused():
    error = refusal(changed(lambda d: d.update(extra=1)))
    assert error.problem == "pod.json: unknown key 'extra'"


def test_an_unknown_volume_file_key_is_refused():
    error = refusal(changed(lambda d: d["volumes"][0]["files"][0].update(mode="0644")))
    assert error.problem == "volumes[0].files[0]: unknown key 'mode'"


def test_an_image_id_that_is_not_sha512_is_refused():
    error = refusal(changed(lambda d: d["images"][0].update(id="sha256-" + "a" * 64)))
    assert "images[0].id" in error.problem and "is not 'sha512-' followed by 128 lowercase hex digits" in error.problem


def test_an_image_id_in_uppercase_hex_is_refused():
    error = refusal(changed(lambda d: d["images"][0].update(id="sha512-" + "A" * 128)))
    assert "images[0].id" in error.problem


def test_a_volume_file_checksum_that_is_not_hex_is_refused():
    error = refusal(changed(lambda d: d["volumes"][0]["files"][0].update(sha512="z" * 128)))
    assert "volumes[0].files[0].sha512" in error.problem


def test_an_absolute_image_path_is_refused():
    error = refusal(changed(lambda d: d["images"][0].update(path="/etc/passwd")))
    assert error.problem == "images[0].path: '/etc/passwd' is absolute; paths in pod.json are relative"


def test_a_file_path_with_dotdot_is_refused():
    error = refusal(changed(lambda d: d["files"][0].update(path="../../etc/shadow")))
    assert error.problem == "files[0].path: '../../etc/shadow' must be normalized, without '.', '..' or '//'"


def test_an_image_without_its_aci_pin_is_refused():
    error = refusal(changed(lambda d: d["images"][0].pop("aci")))
    assert error.problem == "images[0]: missing key 'aci'"


def test_an_aci_pin_without_a_size_is_refused():
    error = refusal(changed(lambda d: d["images"][0]["aci"].pop("size")))
    assert error.problem == "images[0].aci: missing key 'size'"


def test_an_aci_pin_that_is_not_sha512_hex_is_refused():
    error = refusal(changed(lambda d: d["images"][0]["aci"].update(sha512="a" * 64)))
    assert error.problem.startswith("images[0].aci.sha512: ")


def test_a_bare_pod_file_path_from_before_pinning_is_refused_in_one_line():
    error = refusal(changed(lambda d: d.update(files=["frontend.conf"])))
    assert error.problem.startswith("files[0]: 'frontend.conf' is a bare path; pod.json pins each file as")
    assert "\n" not in str(error)


def test_a_volume_file_without_a_size_is_refused():
    error = refusal(changed(lambda d: d["volumes"][0]["files"][0].pop("size")))
    assert error.problem == "volumes[0].files[0]: missing key 'size'"


@pytest.mark.parametrize("size", [-1, 1.5, "12", True, None, 2**62 + 1, 10**400])
def test_a_size_that_is_not_a_byte_count_is_refused(size):
    error = refusal(changed(lambda d: d["files"][0].update(size=size)))
    assert error.problem.startswith("files[0].size: ") or error.kind == "json"


def test_sizes_from_zero_to_2_to_the_62_are_read():
    pod = parse_pod_json(changed(lambda d: (d["files"][0].update(size=0), d["images"][0]["aci"].update(size=2**62))),
                         "bundle/pod.json")
    assert (pod.files[0].size, pod.images[0].aci.size) == (0, 2**62)


def test_a_volume_file_outside_its_volume_directory_is_refused():
    error = refusal(changed(lambda d: d["volumes"][0]["files"][0].update(path="frontend/site.tar.gz")))
    assert "is not inside the volume's directory 'static/'" in error.problem


def test_an_image_and_a_volume_with_the_same_name_are_refused():
    def clash(doc):
        doc["images"].append({**doc["images"][0], "name": "static", "path": "other/image.aci"})
    error = refusal(changed(clash))
    assert error.problem == "name 'static' is used by more than one image or volume"


def test_the_same_file_listed_twice_is_refused():
    error = refusal(changed(lambda d: d.update(files=d["files"] * 2)))
    assert error.problem == "files lists the same file twice"


def test_a_duplicate_json_key_is_refused():
    data = encoded(GOOD).replace(b'"channel": "prod"', b'"channel": "prod", "channel": "staging"', 1)
    error = refusal(data)
    assert error.problem == "not valid JSON: duplicate key 'channel'"
    assert error.kind == "json"


def test_a_bad_pod_name_is_refused():
    error = refusal(changed(lambda d: d.update(name="//web:Frontend")))
    assert error.problem.startswith("name: label '//web:Frontend'")


def test_tip_as_a_version_is_refused():
    error = refusal(changed(lambda d: d.update(version="tip")))
    assert error.problem == "version 'tip' is not a valid version"


def test_an_app_running_an_image_not_in_the_pod_is_refused():
    error = refusal(changed(lambda d: d["manifest"]["apps"][0]["image"].update(id="sha512-" + "c" * 128)))
    assert "which is not among pod.json's images" in error.problem


def test_a_volume_without_a_host_volume_in_the_manifest_is_refused():
    error = refusal(changed(lambda d: d["manifest"].update(volumes=[])))
    assert error.problem == "volume 'static' has no host volume in the manifest"


# ---------------------------------------------------------------- read_pod_json


def test_read_pod_json_reads_a_regular_file(tmp_path):
    (tmp_path / "pod.json").write_bytes(encoded(GOOD))
    assert read_pod_json(tmp_path / "pod.json").version == "1.2.0"


def test_read_pod_json_refuses_a_missing_file(tmp_path):
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json", "bundle/pod.json")
    assert raised.value.problem == "missing"
    assert str(raised.value) == "bundle/pod.json: missing"


def test_read_pod_json_refuses_a_symlink_even_to_a_good_file(tmp_path):
    (tmp_path / "real.json").write_bytes(encoded(GOOD))
    (tmp_path / "pod.json").symlink_to("real.json")
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json")
    assert raised.value.problem == "not a regular file"


def test_read_pod_json_refuses_a_directory(tmp_path):
    (tmp_path / "pod.json").mkdir()
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json")
    assert raised.value.problem == "not a regular file"


def test_read_pod_json_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pod.json")
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json")
    assert raised.value.problem == "not a regular file"


def test_read_pod_json_refuses_a_file_larger_than_16_mib(tmp_path):
    (tmp_path / "pod.json").write_bytes(b" " * (MAX_POD_JSON + 1))
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json")
    assert raised.value.problem == "larger than 16 MiB, not a pod.json"


def test_read_pod_json_refuses_invalid_json_naming_its_line(tmp_path):
    (tmp_path / "pod.json").write_bytes(b'{\n  "name": "//web:frontend",\n  "version": \n}\n')
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json")
    assert raised.value.problem.startswith("not valid JSON: ")
    assert raised.value.line == 4
    assert raised.value.kind == "json"


def test_read_pod_json_refuses_bytes_that_are_not_utf8(tmp_path):
    (tmp_path / "pod.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(PodJsonError) as raised:
        read_pod_json(tmp_path / "pod.json")
    assert raised.value.problem.startswith("not valid JSON")
