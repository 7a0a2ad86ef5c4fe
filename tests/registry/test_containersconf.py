"""What podman users configured for a registry: credentials and registries.conf, read as skopeo reads them."""

from __future__ import annotations

import base64
import json

import pytest

from podrelease.registry.containersconf import Unsupported, host_access

HOST = "registry.example:5000"


def auth(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def env(tmp_path):
    """A home with no configuration at all, and the variables pointing into it."""
    (tmp_path / "home").mkdir()
    return {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "registries.conf")}


def write_json(path, document) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return str(path)


def test_no_configuration_means_anonymous_https(env):
    access = host_access(HOST, env)
    assert (access.insecure, access.credentials(f"{HOST}/a/b")) == (False, None)


def test_the_most_specific_namespace_in_the_auth_file_wins(env, tmp_path):
    env["REGISTRY_AUTH_FILE"] = write_json(tmp_path / "auth.json", {"auths": {
        HOST: auth("host", "h"), f"{HOST}/team": auth("team", "t"), f"{HOST}/team/app": auth("app", "a")}})
    access = host_access(HOST, env)
    assert access.credentials(f"{HOST}/team/app/images/x") == ("app", "a")
    assert access.credentials(f"{HOST}/team/other") == ("team", "t")
    assert access.credentials(f"{HOST}/elsewhere") == ("host", "h")


def test_a_legacy_url_key_names_its_host(env, tmp_path):
    env["REGISTRY_AUTH_FILE"] = write_json(tmp_path / "auth.json", {"auths": {f"https://{HOST}/v1/": auth("old", "o")}})
    assert host_access(HOST, env).credentials(f"{HOST}/a") == ("old", "o")


def test_without_registry_auth_file_the_runtime_file_comes_before_the_docker_one(env, tmp_path):
    write_json(tmp_path / "run" / "containers" / "auth.json", {"auths": {HOST: auth("podman", "p")}})
    write_json(tmp_path / "home" / ".docker" / "config.json", {"auths": {HOST: auth("docker", "d")}})
    assert host_access(HOST, env).credentials(f"{HOST}/a") == ("podman", "p")


def test_the_docker_config_is_read_when_podman_has_no_entry(env, tmp_path):
    write_json(tmp_path / "run" / "containers" / "auth.json", {"auths": {"other.example": auth("x", "x")}})
    write_json(tmp_path / "home" / ".docker" / "config.json", {"auths": {HOST: auth("docker", "d")}})
    assert host_access(HOST, env).credentials(f"{HOST}/a") == ("docker", "d")


@pytest.mark.parametrize("document", [
    {"credHelpers": {HOST: "ecr-login"}},
    {"auths": {}, "credsStore": "desktop"},
    {"auths": {HOST: {"identitytoken": "refresh-me"}}},
    {"auths": {HOST: {"auth": "not base64!"}}},
], ids=["credential helper", "credential store", "identity token", "bad base64"])
def test_credentials_only_skopeo_can_use_are_left_to_it(env, tmp_path, document):
    env["REGISTRY_AUTH_FILE"] = write_json(tmp_path / "auth.json", document)
    with pytest.raises(Unsupported):
        host_access(HOST, env).credentials(f"{HOST}/a")


def test_a_registry_marked_insecure_may_be_reached_over_plain_http(env, tmp_path):
    (tmp_path / "registries.conf").write_text(f'[[registry]]\nlocation = "{HOST}"\ninsecure = true\n')
    assert host_access(HOST, env).insecure


def test_the_version_1_insecure_list_counts_too(env, tmp_path):
    (tmp_path / "registries.conf").write_text(f'[registries.insecure]\nregistries = ["{HOST}"]\n')
    assert host_access(HOST, env).insecure


def test_another_registry_marked_insecure_does_not_make_this_one_insecure(env, tmp_path):
    (tmp_path / "registries.conf").write_text('[[registry]]\nlocation = "other.example"\ninsecure = true\n')
    assert not host_access(HOST, env).insecure


@pytest.mark.parametrize("entry", [
    f'location = "{HOST}"\n[[registry.mirror]]\nlocation = "mirror.example"\n',
    f'prefix = "{HOST}"\nlocation = "elsewhere.example"\n',
    f'location = "{HOST}"\nblocked = true\n',
], ids=["mirror", "rewritten location", "blocked"])
def test_a_registries_conf_that_redirects_the_host_is_left_to_skopeo(env, tmp_path, entry):
    (tmp_path / "registries.conf").write_text("[[registry]]\n" + entry)
    with pytest.raises(Unsupported):
        host_access(HOST, env)


def test_an_unreadable_registries_conf_is_left_to_skopeo(env, tmp_path):
    (tmp_path / "registries.conf").write_text("[[registry]\n")
    with pytest.raises(Unsupported):
        host_access(HOST, env)


def test_a_certs_d_directory_for_the_host_is_left_to_skopeo(env, tmp_path):
    (tmp_path / "home" / ".config" / "containers" / "certs.d" / HOST).mkdir(parents=True)
    with pytest.raises(Unsupported):
        host_access(HOST, env)


@pytest.mark.parametrize("conf", [
    '[registries]\ninsecure = ["registry.example:5000"]\n',  # v1 keys with a list where a table belongs
    'registry = "registry.example:5000"\n',  # v2 key with a string where an array of tables belongs
    'registry = ["registry.example:5000"]\n',
])
def test_a_registries_conf_of_the_wrong_shape_is_left_to_skopeo(env, tmp_path, conf):
    (tmp_path / "registries.conf").write_text(conf)
    with pytest.raises(Unsupported):
        host_access(HOST, env)


def test_settings_for_a_namespace_of_the_host_leave_the_host_to_skopeo(env, tmp_path):
    """`insecure` for `registry.example:5000/scratch` is not for the rest of the host: skopeo matches per repository."""
    (tmp_path / "registries.conf").write_text(
        '[[registry]]\nprefix = "registry.example:5000/scratch"\nlocation = "registry.example:5000/scratch"\ninsecure = true\n')
    with pytest.raises(Unsupported, match="namespace"):
        host_access(HOST, env)


def test_the_users_own_registries_conf_replaces_the_systems_drop_ins_not_the_users(tmp_path):
    home = tmp_path / "home"
    (home / ".config/containers/registries.conf.d").mkdir(parents=True)
    (home / ".config/containers/registries.conf").write_text("")
    (home / ".config/containers/registries.conf.d/local.conf").write_text(f'[[registry]]\nlocation = "{HOST}"\ninsecure = true\n')
    assert host_access(HOST, {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run")}).insecure
