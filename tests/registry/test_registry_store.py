"""An image pushed to a real registry and restored comes back bit for bit, over HTTP or through skopeo."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from podrelease.registry.references import parse_registry
from podrelease.registry.store import RegistryStore


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path: its sha256 and mode."""
    found = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(folder))] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {oct(path.stat().st_mode)}"
    return found


@pytest.fixture
def pushed(registry, released_example, monkeypatch):
    """(store, repository, the image directory) for an example image pushed under 1.0.0."""
    for name, value in registry.env("unused").items():
        if name != "PODRELEASE_REGISTRY":
            monkeypatch.setenv(name, value)
    image_dir = next(p.parent for p in sorted((released_example / "images").rglob("sha512")))
    store = RegistryStore(parse_registry(f"{registry.host}/store{uuid.uuid4().hex[:8]}"))
    repository = store.registry.image("app", "image")
    store.push_image(image_dir, repository, "1.0.0")
    return store, repository, image_dir


def test_a_restored_image_is_bit_for_bit_the_pushed_one(pushed, tmp_path):
    store, repository, image_dir = pushed
    store.restore_image(repository, "1.0.0", tmp_path / "back")
    assert tree(tmp_path / "back") == tree(image_dir)


def test_a_restore_left_to_skopeo_is_bit_for_bit_the_same(pushed, registry, tmp_path, monkeypatch):
    store, repository, image_dir = pushed
    host = registry.host
    (tmp_path / "mirrored.conf").write_text(
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n[[registry.mirror]]\nlocation = "{host}"\ninsecure = true\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "mirrored.conf"))
    RegistryStore(store.registry).restore_image(repository, "1.0.0", tmp_path / "back")
    assert tree(tmp_path / "back") == tree(image_dir)
