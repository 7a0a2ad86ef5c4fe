"""Review: a registries.conf of the wrong shape leaves the host to skopeo (which words the error), never a traceback."""

from __future__ import annotations

import pytest

from podrelease.registry.containersconf import Unsupported, host_access

HOST = "registry.example:5000"


@pytest.mark.parametrize("conf", [
    '[registries]\ninsecure = ["registry.example:5000"]\n',  # v1 keys with a list where a table belongs
    'registry = "registry.example:5000"\n',  # v2 key with a string where an array of tables belongs
    'registry = ["registry.example:5000"]\n',
])
def test_a_registries_conf_of_the_wrong_shape_is_unsupported(tmp_path, conf):
    (tmp_path / "home").mkdir()
    (tmp_path / "registries.conf").write_text(conf)
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "registries.conf")}
    with pytest.raises(Unsupported):
        host_access(HOST, env)


def test_a_namespace_marked_insecure_leaves_the_rest_of_its_host_verified(tmp_path):
    """containers-registries.conf(5): `insecure` belongs to the entry whose prefix matches the repository,
    so TLS stays verified (and HTTP off) for repositories outside `registry.example:5000/scratch`."""
    (tmp_path / "home").mkdir()
    (tmp_path / "registries.conf").write_text(
        '[[registry]]\nprefix = "registry.example:5000/scratch"\nlocation = "registry.example:5000/scratch"\ninsecure = true\n')
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
           "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "registries.conf")}
    try:
        access = host_access(HOST, env)
    except Unsupported:
        return  # leaving the host to skopeo is right too
    assert not access.insecure
