"""The JSON Schemas of schemas/, checked with the real `check-jsonschema` command.

Every example file passes its schema (build rules, instructions, channel files
and the pod.json files a release writes); every corpus case whose rejection is
about shape (unknown keys, wrong types, bad names, labels, versions, paths)
fails it. A corpus case about something a schema cannot see (YAML syntax,
encodings, sizes, fifos, symlinks, other files) is listed with its reason,
so every case of tests/corpus/ is accounted for.

check-jsonschema reads YAML as YAML 1.2 with typed scalars (an unquoted 1.10
is the number 1.1), while podrelease keeps each scalar's text: the schemas
accept numbers where podrelease takes an unquoted scalar as text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpuscases import CASES, Case, prepare

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"
SCHEMA_FILES = ("build.schema.json", "instruction.schema.json", "channel.schema.json", "pod.schema.json")


def _check_jsonschema() -> str | None:
    """The command next to this Python (a venv), else on PATH."""
    beside = Path(sys.executable).with_name("check-jsonschema")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("check-jsonschema")


CHECK = _check_jsonschema()
pytestmark = pytest.mark.skipif(
    CHECK is None, reason="check-jsonschema is not installed (pip install check-jsonschema)"
)


def schema_for(relative: str) -> str:
    """Which schema a release-root file answers to, from where it is."""
    parts = relative.split("/")
    if parts[0] == "shipyard" and parts[-1] == "build.yaml":
        return "build.schema.json"
    if parts[0] == "channels" and parts[-1] == "pod.json":
        return "pod.schema.json"
    if parts[0] == "channels" and len(parts) == 3 and parts[-1] == "channel.yaml":
        return "channel.schema.json"
    if parts[0] == "channels" and parts[-1].endswith(".yaml"):
        return "instruction.schema.json"
    raise AssertionError(f"{relative}: no schema for this file")


def validate(files: dict[Path, str]) -> dict[Path, list[str] | str]:
    """Each file's schema errors (an empty list: it passes), or 'parse error'.

    One check-jsonschema run per schema, all its files at once.
    """
    verdicts: dict[Path, list[str] | str] = {path: [] for path in files}
    for schema in sorted(set(files.values())):
        paths = [path for path, name in files.items() if name == schema]
        result = subprocess.run(
            [CHECK, "--output-format", "json", "--schemafile", str(SCHEMAS / schema), *map(str, paths)],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode in (0, 1), result.stderr[-3000:]
        report = json.loads(result.stdout)
        for error in report.get("errors", []):
            verdicts[Path(error["filename"])].append(f"{error['path']}: {error['message']}")
        for error in report.get("parse_errors", []):
            verdicts[Path(error["filename"])] = "parse error"
    return verdicts


# ---------------------------------------------------------------- the schemas themselves


def test_every_schema_is_valid_draft_2020_12():
    result = subprocess.run(
        [CHECK, "--check-metaschema", *(str(SCHEMAS / name) for name in SCHEMA_FILES)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in SCHEMA_FILES:
        schema = json.loads((SCHEMAS / name).read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://podrelease.invalid/schemas/{name}"
        assert schema["title"] and schema["description"]


def test_shared_definitions_are_the_same_in_every_schema():
    """Each schema carries the $defs it uses (check-jsonschema would fetch a
    shared file from its $id); a definition must read the same everywhere."""
    seen: dict[str, tuple[str, object]] = {}
    for name in SCHEMA_FILES:
        for key, definition in json.loads((SCHEMAS / name).read_text()).get("$defs", {}).items():
            first = seen.setdefault(key, (name, definition))
            assert definition == first[1], f"$defs/{key} differs between {first[0]} and {name}"


def _properties(node, where=""):
    """Every (where, property schema) under `properties`, recursively."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties":
                for prop, sub in value.items():
                    yield f"{where}/{prop}", sub
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _properties(item, where)


@pytest.mark.parametrize("name", SCHEMA_FILES[:3])
def test_every_property_of_a_release_file_is_described_and_closed(name):
    """Editors show descriptions; a misspelt key must be flagged."""
    schema = json.loads((SCHEMAS / name).read_text())
    defs = schema.get("$defs", {})
    for where, prop in _properties(schema):
        target = defs.get(prop.get("$ref", "").removeprefix("#/$defs/"), {})
        assert prop.get("description") or target.get("description"), f"{name}: {where} has no description"
    for node in [schema, *defs.values()]:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{name}: {sorted(node['properties'])} is open"


# ---------------------------------------------------------------- the example release root


def example_files() -> list[str]:
    files = [p for p in (REPO / "shipyard").rglob("build.yaml")]
    files += [p for p in (REPO / "channels").rglob("*.yaml")]
    return sorted(str(p.relative_to(REPO)) for p in files)


EXAMPLES = example_files()


@pytest.fixture(scope="module")
def example_verdicts() -> dict[Path, list[str] | str]:
    return validate({REPO / relative: schema_for(relative) for relative in EXAMPLES})


def test_the_example_has_every_kind_of_release_file():
    assert {schema_for(relative) for relative in EXAMPLES} >= {"build.schema.json", "instruction.schema.json"}


@pytest.mark.parametrize("relative", EXAMPLES)
def test_example_file_passes_its_schema(relative, example_verdicts):
    assert example_verdicts[REPO / relative] == []


def test_every_released_pod_json_passes(released_example):
    pod_files = sorted(released_example.glob("channels/**/pod.json"))
    assert len(pod_files) == len([p for p in EXAMPLES if schema_for(p) == "instruction.schema.json"])
    verdicts = validate({path: "pod.schema.json" for path in pod_files})
    assert {str(path.relative_to(released_example)): v for path, v in verdicts.items() if v} == {}


def test_every_channel_file_passes(tmp_path):
    """The example has no channel.yaml; the one formats.md shows must pass."""
    path = tmp_path / "channels/staging/channel.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("parameters: {args: [--verbose], environment: {LOG_LEVEL: debug}}\n")
    assert schema_for("channels/staging/channel.yaml") == "channel.schema.json"
    assert validate({path: "channel.schema.json"}) == {path: []}


# ---------------------------------------------------------------- the hostile corpus

# Cases rejected for their shape: every bad file a case names must fail its schema
# (as a schema violation, not as YAML the schema checker cannot parse).
SHAPE_CASES = [
    "build-app-values",
    "build-bad-names",
    "build-labels-with-dotdot",
    "build-pod-file-paths",
    "build-pod-name-clashes",
    "build-rootfs-modes",
    "build-rootfs-paths",
    "build-unknown-keys",
    "build-wrong-types-top",
    "build-wrong-types-values",
    "instr-bad-names",
    "instr-long-line-1mib",
    "instr-unknown-key",
    "instr-unknown-parameter",
    "instr-wrong-types-nested",
    "instr-wrong-types-top",
    "path-several-bad-files",
    "build-bidi-from-label",
    "build-control-image-name",
    "build-long-environment-name",
    "build-long-from-label",
    "build-long-health-path",
    "build-long-image-name",
    "build-long-rootfs-dst",
    "build-long-rootfs-dst-segment",
    "build-long-volume-name",
    "instr-bidi-pin-label",
    "instr-control-environment-name",
    "instr-control-pin-version",
    "instr-control-rule",
    "instr-long-environment-name",
    "instr-long-pin-label",
    "instr-long-revision",
]

# Bad files of a shape case whose own mistake is not about shape (not checked).
NOT_SHAPE_FILES = {
    "build-pod-name-clashes": {
        "shipyard/pod-file-clash/build.yaml": "two files with one base name: a rule across list items",
        "shipyard/pod-image-twice/build.yaml": "one image as a bare name and as a label: a rule across list items",
        "shipyard/pod-image-volume-clash/build.yaml": "a volume named like an image: a rule across two lists",
    },
    "build-rootfs-paths": {
        "shipyard/rootfs-src-missing/build.yaml": "src does not exist on disk",
        "shipyard/rootfs-src-slash-on-file/build.yaml": "src ends in '/' but is a file on disk",
    },
    "path-several-bad-files": {
        "channels/staging/web/frontend/1.0.0.yaml": "a duplicate key is a YAML-level mistake",
    },
}

# Cases a schema cannot judge: what is wrong is not the shape of the document.
NOT_SHAPE_CASES = {
    "build-duplicate-image": "duplicate key: refused by the YAML reader, not a shape",
    "build-latin1": "encoding: the file is not UTF-8",
    "build-pod-file-missing": "a pod file missing on disk",
    "build-pod-unknown-image": "cross-file: no build file defines the image",
    "build-python-tag": "YAML tag: refused by the reader",
    "build-symlinks": "symlinks on disk leading out of the build folder",
    "build-yaml-bomb": "alias expansion: a resource limit of the reader",
    "instr-billion-laughs": "alias expansion: a resource limit of the reader",
    "instr-deep-block-nesting": "nesting depth: a resource limit of the reader",
    "instr-deep-nesting-10k": "nesting depth: a resource limit of the reader",
    "instr-deep-nesting-1m": "nesting depth: a resource limit of the reader",
    "instr-duplicate-key": "duplicate key: refused by the YAML reader, not a shape",
    "instr-duplicate-pin": "duplicate key: refused by the YAML reader, not a shape",
    "instr-escape-character": "a control character YAML does not allow",
    "instr-huge-file-2mib": "file size",
    "instr-huge-integer": "an integer too large to convert: a limit of the reader",
    "instr-latin1": "encoding: the file is not UTF-8",
    "instr-malformed-flow-mapping": "YAML syntax error",
    "instr-malformed-yaml": "YAML syntax errors (indentation, two documents, tabs)",
    "instr-merge-key": "a YAML merge key: refused by the reader",
    "instr-nul-byte": "a NUL character YAML does not allow",
    "instr-other-tags": "YAML tags: refused by the reader",
    "instr-pins-not-in-pod": "cross-file: the pinned labels are not in the pod rule",
    "instr-python-object-tag": "YAML tag: refused by the reader",
    "instr-recursive-alias": "a recursive alias: a resource limit of the reader",
    "instr-rule-missing": "cross-file: no build file defines the rule",
    "instr-too-many-values": "value count: a resource limit of the reader",
    "instr-utf16-bom": "encoding: UTF-16, not UTF-8",
    "path-bad-segments": "file path: folder and file names, not content",
    "path-build-yml": "file name: build.yml instead of build.yaml",
    "path-channel-uppercase": "file path: the channel folder's name",
    "path-directly-under-channel": "file path: no label path or pod folder",
    "path-duplicate-version": "cross-file: two instructions for one version",
    "path-fifo-build-file": "file type: a fifo, not a regular file",
    "path-several-bad-names": "file names: bad versions and a .yml suffix",
    "path-shipyard-uppercase": "file path: the shipyard folder's name",
    "path-symlinked-instruction": "file type: a symlink leading out of the tree",
    "path-yml-suffix": "file name: .yml instead of .yaml",
    "build-control-pod-file": "a pod file missing on disk (its name holds control characters)",
    "build-control-rootfs-src": "a rootfs src missing on disk (its name holds control characters)",
    "build-long-pod-file": "a pod file missing on disk (a name longer than a file system takes)",
    "build-long-rootfs-src-name": "a rootfs src missing on disk (a name longer than a file system takes)",
    "build-long-rootfs-src-path": "a rootfs src missing on disk (a path longer than PATH_MAX)",
    "instr-long-pin-version": "an unquoted version a schema reads as the number 1.0; podrelease reads its 302 characters",
    "path-bidi-channel-name": "file path: the channel folder's name",
    "path-control-build-folder": "file path: a build folder's name",
    "path-control-instruction-name": "file name: the instruction's version",
    "path-long-label-path": "file path: the build folder's depth",
    "path-newline-pod-folder": "file path: the pod folder's name",
    "path-undecodable-name": "file path: the channel folder's name, not UTF-8",
}


def bad_files(name: str) -> list[str]:
    """The files a shape case's expected error lines name, less its non-shape ones."""
    named = [line.split(":", 1)[0] for line in Case.read(name).expect]
    return [path for path in named if path not in NOT_SHAPE_FILES.get(name, {})]


def test_every_corpus_case_is_accounted_for():
    shape, not_shape = set(SHAPE_CASES), set(NOT_SHAPE_CASES)
    assert not shape & not_shape, f"in both lists: {sorted(shape & not_shape)}"
    assert shape | not_shape == set(CASES), (
        f"not classified: {sorted(set(CASES) - shape - not_shape)}; "
        f"not in the corpus: {sorted((shape | not_shape) - set(CASES))}"
    )
    for name, files in NOT_SHAPE_FILES.items():
        assert name in shape
        named = [line.split(":", 1)[0] for line in Case.read(name).expect]
        assert set(files) <= set(named), f"{name}: {sorted(set(files) - set(named))} is not one of its bad files"
    for name in SHAPE_CASES:
        assert bad_files(name), f"{name} has no file left to check"


@pytest.fixture(scope="module")
def corpus_verdicts(tmp_path_factory) -> dict[tuple[str, str], list[str] | str]:
    """Each shape case prepared as test_corpus prepares it, all its bad files validated."""
    base = tmp_path_factory.mktemp("schema-corpus")
    files: dict[Path, str] = {}
    owner: dict[Path, tuple[str, str]] = {}
    for name in SHAPE_CASES:
        root = prepare(Case.read(name), base / name)
        for relative in bad_files(name):
            files[root / relative] = schema_for(relative)
            owner[root / relative] = (name, relative)
    return {owner[path]: verdict for path, verdict in validate(files).items()}


@pytest.mark.parametrize("name", SHAPE_CASES)
def test_shape_case_fails_its_schema(name, corpus_verdicts):
    for relative in bad_files(name):
        verdict = corpus_verdicts[(name, relative)]
        assert verdict != "parse error", f"{relative}: check-jsonschema could not read it"
        assert verdict, f"{relative} passes {schema_for(relative)}"


# ---------------------------------------------------------------- rules, one document each

VALID, INVALID = True, False

DOCUMENTS = [
    # build rules
    ("build", "empty-file", "", VALID),
    ("build", "null-sections", "images:\npods:\n  app:\n", VALID),
    ("build", "unquoted-modes", "images:\n  app:\n    rootfs:\n      - {src: a/, dst: /a/, mode: 0644}\n      - {src: b, dst: /b, mode: 755}\n", VALID),
    ("build", "from-label", "images:\n  app:\n    from: //base:os@1.0.0\n", VALID),
    ("build", "from-bare-name-date-version", "images:\n  app:\n    from: os@2024-01-15\n", VALID),
    ("build", "from-top-label-path", "images:\n  app:\n    from: //:os@v2_beta-3\n", VALID),
    ("build", "text-scalars", "images:\n  app:\n    os: linux\n    arch: arm64\n    app:\n      exec: [/bin/sh, -c, 42, true]\n      user: 0\n      group: 0\n      environment: {DEBUG: true, PORT: 8080, _X1: '1'}\n", VALID),
    ("build", "ports-and-mounts", "images:\n  app:\n    app:\n      ports: [{name: http, protocol: tcp, port: 65535, count: 2, socketActivated: true}]\n      mountPoints: [{name: data, path: /var/lib/x/, readOnly: true}]\n      workingDirectory: /\n", VALID),
    ("build", "pod-args-numbers", "pods:\n  app:\n    images: [app, //web:logship]\n    args: [--port, 8080]\n    files: [units/app.service]\n    volumes: [{name: data, label: data, path: /data, read_only: false}]\n", VALID),
    ("build", "from-tip", "images:\n  app:\n    from: //base:os@tip\n", INVALID),
    ("build", "from-without-version", "images:\n  app:\n    from: //base:os\n", INVALID),
    ("build", "from-two-ats", "images:\n  app:\n    from: //base:os@1@2\n", INVALID),
    ("build", "port-zero", "images:\n  app:\n    app:\n      ports: [{name: http, protocol: tcp, port: 0}]\n", INVALID),
    ("build", "port-boolean-socket", "images:\n  app:\n    app:\n      ports: [{name: http, protocol: tcp, port: 80, socketActivated: 'true'}]\n", INVALID),
    ("build", "mode-five-digits", "images:\n  app:\n    rootfs: [{src: a, dst: /a, mode: '01777'}]\n", VALID),
    ("build", "mode-too-long", "images:\n  app:\n    rootfs: [{src: a, dst: /a, mode: '107777'}]\n", INVALID),
    ("build", "rootfs-unknown-key", "images:\n  app:\n    rootfs: [{src: a, dst: /a, owner: root}]\n", INVALID),
    ("build", "working-directory-double-slash", "images:\n  app:\n    app: {workingDirectory: /a//b}\n", INVALID),
    ("build", "working-directory-dot", "images:\n  app:\n    app: {workingDirectory: /a/./b}\n", INVALID),
    ("build", "mount-point-readonly-string", "images:\n  app:\n    app: {mountPoints: [{name: d, path: /d, readOnly: 'no'}]}\n", INVALID),
    ("build", "segment-too-long", f"pods:\n  app:\n    images: [//{'a' * 256}:app]\n", INVALID),
    ("build", "name-too-long", f"pods:\n  {'a' * 256}: {{}}\n", INVALID),
    ("build", "name-double-dash", "images:\n  my--app: {}\n", INVALID),
    ("build", "pod-file-directory", "pods:\n  app:\n    files: [units/]\n", INVALID),
    ("build", "exec-null-item", "images:\n  app:\n    app: {exec: [/bin/sh, null]}\n", INVALID),
    ("build", "pod-env-null", "pods:\n  app:\n    environment: {A: null}\n", INVALID),
    # release instructions
    ("instruction", "empty-file", "", VALID),
    ("instruction", "numeric-versions", "images: {//web:frontend: 1.10}\nvolumes: {//web:static: 2}\n", VALID),
    ("instruction", "date-version", "images: {//web:frontend: 2024-01-15}\n", VALID),
    ("instruction", "odd-versions", "images: {//web:a: 1..0, //web:b: 1.0.0+build.5, //web:c: RC1, //web:d: v2_beta-3}\n", VALID),
    ("instruction", "yanked-with-reason", "yanked: true\nreason: 500s on /checkout\n", VALID),
    ("instruction", "everything", "rule: frontend\nrevision: 1234567\ndirty: true\nimages:\nvolumes:\nparameters: {args: [--verbose, 1], environment: {LOG_LEVEL: debug}}\nyanked: false\n", VALID),
    ("instruction", "top-label-path", "rule: //:frontend\n", VALID),
    ("instruction", "reason-without-yanked", "reason: broken\n", INVALID),
    ("instruction", "reason-not-yanked", "yanked: false\nreason: broken\n", INVALID),
    ("instruction", "yanked-string", "yanked: 'yes'\n", INVALID),
    ("instruction", "dirty-number", "dirty: 1\n", INVALID),
    ("instruction", "pin-tip", "images: {//web:frontend: tip}\n", INVALID),
    ("instruction", "pin-version-space", "images: {//web:frontend: 1 0}\n", INVALID),
    ("instruction", "pin-version-plus-first", "images: {//web:frontend: '+1'}\n", INVALID),
    ("instruction", "pin-version-too-long", f"images: {{//web:frontend: '{'1' * 200}.{'1' * 60}'}}\n", INVALID),
    ("instruction", "pin-label-without-name", "images: {//web/frontend: 1.0.0}\n", INVALID),
    ("instruction", "rule-with-slash", "rule: web/frontend\n", INVALID),
    ("instruction", "label-path-too-long", f"rule: //{'/'.join(['abcdefghi'] * 103)}:x\n", INVALID),
    ("instruction", "label-path-at-limit", f"rule: //{'/'.join(['abcdefghi'] * 102)}/abcd:x\n", VALID),
    # channel defaults
    ("channel", "empty-file", "", VALID),
    ("channel", "parameters", "parameters:\n  args: [--verbose]\n  environment: {LOG_LEVEL: debug}\n", VALID),
    ("channel", "instruction-key", "parameters: {args: [--verbose]}\nrule: //web:frontend\n", INVALID),
    ("channel", "unknown-parameter", "parameters: {env: {A: b}}\n", INVALID),
]

SHA = "0123456789abcdef" * 8
POD = {
    "name": "//web:frontend",
    "version": "1.2.0",
    "channel": "staging",
    "revision": None,
    "images": [{"label": "//web:frontend", "name": "frontend", "version": "1.1.0", "id": f"sha512-{SHA}", "path": "frontend/image.aci",
                "aci": {"sha512": SHA, "size": 6190112}}],
    "volumes": [{"label": "//web:static", "name": "static", "version": "1.0.0",
                 "files": [{"path": "static/assets.tar.gz", "sha512": SHA, "size": 40960}]}],
    "files": [{"path": "frontend.service", "sha512": SHA, "size": 312}],
    "manifest": {
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [{"name": "frontend", "image": {"name": "example.com/web/frontend", "id": f"sha512-{SHA}", "labels": [{"name": "version", "value": "1.1.0"}]}}],
        "volumes": [{"name": "static", "kind": "host", "readOnly": True}],
    },
}


def pod(change) -> str:
    document = json.loads(json.dumps(POD))
    change(document)
    return json.dumps(document)


POD_DOCUMENTS = [
    ("today", lambda d: None, VALID),
    ("with-oci-and-empty-files", lambda d: (
        d["images"][0].update(oci="sha256:" + "ab" * 32),
        d["volumes"][0]["files"][0].update(size=0),
        d.update(files=[{"path": "frontend.service", "sha512": SHA, "size": 12},
                        {"path": "other.conf", "sha512": SHA, "size": 0}], health=None),
    ), VALID),
    ("health-object", lambda d: d.update(health={"exec": ["/bin/true"]}), VALID),
    ("revision-string", lambda d: d.update(revision="9c35becf47fd"), VALID),
    ("health-list", lambda d: d.update(health=[]), INVALID),
    ("unknown-key", lambda d: d.update(built="today"), INVALID),
    ("missing-revision", lambda d: d.pop("revision"), INVALID),
    ("bare-name", lambda d: d.update(name="frontend"), INVALID),
    ("version-tip", lambda d: d.update(version="tip"), INVALID),
    ("channel-uppercase", lambda d: d.update(channel="Prod"), INVALID),
    ("id-uppercase", lambda d: d["images"][0].update(id=f"sha512-{SHA.upper()}"), INVALID),
    ("image-path-sha512", lambda d: d["images"][0].update(path="frontend/sha512"), INVALID),
    ("image-path-absolute", lambda d: d["images"][0].update(path="/frontend/image.aci"), INVALID),
    ("image-unknown-key", lambda d: d["images"][0].update(digest=SHA), INVALID),
    ("oci-sha512", lambda d: d["images"][0].update(oci=f"sha512:{SHA}"), INVALID),
    ("aci-short-digest", lambda d: d["images"][0].update(aci={"sha512": SHA[:64], "size": 1}), INVALID),
    ("aci-without-size", lambda d: d["images"][0].update(aci={"sha512": SHA}), INVALID),
    ("aci-missing", lambda d: d["images"][0].pop("aci"), INVALID),
    ("aci-size-string", lambda d: d["images"][0].update(aci={"sha512": SHA, "size": "12"}), INVALID),
    ("volume-file-without-size", lambda d: d["volumes"][0]["files"][0].pop("size"), INVALID),
    ("file-bare-path", lambda d: d.update(files=["frontend.service"]), INVALID),
    ("file-without-size", lambda d: d["files"][0].pop("size"), INVALID),
    ("volume-file-negative-size", lambda d: d["volumes"][0]["files"][0].update(size=-1), INVALID),
    ("volume-file-outside-volume", lambda d: d["volumes"][0]["files"][0].update(path="assets.tar.gz"), INVALID),
    ("file-dotdot", lambda d: d["files"][0].update(path="../etc/passwd"), INVALID),
    ("file-pod-json", lambda d: d["files"][0].update(path="pod.json"), INVALID),
    ("file-backslash", lambda d: d["files"][0].update(path="a\\b"), INVALID),
    ("file-twice", lambda d: d.update(files=d["files"] * 2), INVALID),
    ("file-object-unknown-key", lambda d: d["files"][0].update(mode="0644"), INVALID),
    ("manifest-kind", lambda d: d["manifest"].update(acKind="ImageManifest"), INVALID),
]


@pytest.fixture(scope="module")
def document_verdicts(tmp_path_factory) -> dict[tuple[str, str], list[str] | str]:
    base = tmp_path_factory.mktemp("schema-documents")
    files: dict[Path, str] = {}
    owner: dict[Path, tuple[str, str]] = {}
    for kind, name, text, _ in DOCUMENTS:
        path = base / kind / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        files[path], owner[path] = f"{kind}.schema.json", (kind, name)
    for name, change, _ in POD_DOCUMENTS:
        path = base / "pod" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(pod(change))
        files[path], owner[path] = "pod.schema.json", ("pod", name)
    return {owner[path]: verdict for path, verdict in validate(files).items()}


@pytest.mark.parametrize(
    "kind, name, valid",
    [(kind, name, valid) for kind, name, _, valid in DOCUMENTS] + [("pod", name, valid) for name, _, valid in POD_DOCUMENTS],
    ids=[f"{kind}-{name}" for kind, name, _, _ in DOCUMENTS] + [f"pod-{name}" for name, _, _ in POD_DOCUMENTS],
)
def test_document(kind, name, valid, document_verdicts):
    verdict = document_verdicts[(kind, name)]
    assert verdict != "parse error"
    if valid:
        assert verdict == []
    else:
        assert verdict, f"{kind} {name} passes its schema"


def load_with_podrelease(kind: str, name: str, text: str, base: Path) -> bool:
    """Whether podrelease's own loader accepts the document (UserError: no)."""
    from podrelease.core.errors import UserError
    from podrelease.core.names import Label
    from podrelease.model.instructions import load_channel_defaults, load_instruction
    from podrelease.model.layout import InstructionPath
    from podrelease.model.rules import load_build_file

    if kind == "build":
        folder = base / "shipyard" / name
        (folder / "a").mkdir(parents=True)
        (folder / "units").mkdir()
        (folder / "b").write_text("b\n")
        (folder / "units/app.service").write_text("[Unit]\n")
        path = folder / "build.yaml"
    elif kind == "instruction":
        path = base / "channels/prod/web/frontend" / f"{name}.yaml"
    else:
        path = base / "channels" / name / "channel.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        if kind == "build":
            load_build_file(path, str(path), name)
        elif kind == "instruction":
            load_instruction(InstructionPath(path, str(path), "prod", Label("web", "frontend"), name))
        else:
            load_channel_defaults(path, str(path))
    except UserError:
        return False
    return True


@pytest.mark.parametrize(
    "kind, name, text, valid", DOCUMENTS, ids=[f"{kind}-{name}" for kind, name, _, _ in DOCUMENTS]
)
def test_podrelease_agrees_with_the_schema(kind, name, text, valid, tmp_path):
    """The schema mirrors the loader: each document above gets the same answer from both."""
    assert load_with_podrelease(kind, name, text, tmp_path) == valid


def test_the_editor_modelines_in_the_docs_point_at_the_schemas():
    """docs/editors.md shows `# <file>` then its modeline: each path must lead to the right schema."""
    lines = (REPO / "docs/editors.md").read_text().splitlines()
    checked = 0
    for first, second in zip(lines, lines[1:], strict=False):
        if not second.startswith("# yaml-language-server: $schema="):
            continue
        relative = first.removeprefix("# ").split(" ")[0]
        target = os.path.normpath(os.path.join(os.path.dirname(relative), second.split("=", 1)[1]))
        assert target == f"schemas/{schema_for(relative)}", f"{relative}: {second}"
        checked += 1
    assert checked >= 4
