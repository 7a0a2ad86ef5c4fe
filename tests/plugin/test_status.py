"""`doit status`: per channel and pod, where tip points, what is released, pending, yanked, and waiting to be promoted."""

from __future__ import annotations

import json

from conftest import copy_example, doit
from instructing import instruct


def status_json(root, *args: str) -> dict:
    result = doit(root, "status", "--json", *args, check=True)
    return {pod["name"]: pod for pod in json.loads(result.stdout)["pods"]}


def test_status_shows_each_pods_tip_and_released_versions(released_example):
    pods = status_json(released_example)
    assert sorted(pods) == ["prod/infra/db/pg", "prod/web/frontend", "staging/infra/db/pg", "staging/web/frontend"]
    pg = pods["prod/infra/db/pg"]
    assert (pg["tip"], pg["released"], pg["pending"], pg["yanked"]) == ("1.10.0", ["1.9.0", "1.10.0"], [], [])


def test_status_shows_the_newest_version_of_the_pod_in_each_other_channel(released_example):
    frontend = status_json(released_example, "prod/web/frontend")["prod/web/frontend"]
    assert frontend["other_channels"] == [{"channel": "staging", "newest": "1.2.0", "newer": True}]
    text = doit(released_example, "status", "prod/web/frontend", check=True).stdout
    assert "  staging:  1.2.0 newer: doit promote staging/web/frontend/1.2.0 prod\n" in text


def test_status_shows_pending_and_yanked_versions_and_the_tip_move(tmp_path):
    root = copy_example(tmp_path / "root")
    doit(root, check=True)
    instruct(root, "1.1.0", 'yanked: true\nreason: "500s on /checkout"\n')
    instruct(root, "1.4.0")
    frontend = status_json(root, "//web:frontend")["prod/web/frontend"]
    assert frontend["pending"] == ["1.4.0"]
    assert frontend["yanked"] == [{"version": "1.1.0", "reason": "500s on /checkout", "released": True}]
    assert (frontend["tip"], frontend["tip_target"]) == ("1.1.0", None)
    text = doit(root, "status", "prod/web/frontend", check=True).stdout
    assert "  tip       1.1.0 (doit moves it to (none))\n" in text
    assert "  yanked    1.1.0 (500s on /checkout)\n" in text


def test_a_status_filter_selects_a_channel_or_a_pod_label(released_example):
    assert sorted(status_json(released_example, "staging")) == ["staging/infra/db/pg", "staging/web/frontend"]
    assert sorted(status_json(released_example, "//infra/db:pg")) == ["prod/infra/db/pg", "staging/infra/db/pg"]


def test_a_status_filter_that_selects_nothing_suggests_the_closest(released_example):
    result = doit(released_example, "status", "pord")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == "doit status: nothing matches 'pord'; did you mean prod?\n"


def test_a_version_already_instructed_here_is_not_waiting_to_be_promoted(tmp_path):
    root = copy_example(tmp_path / "root")
    doit(root, check=True)
    instruct(root, "1.2.0", "images: {//web:frontend: 1.1.0}\nvolumes: {//web:static: 1.0.0}\n")  # pending in prod
    frontend = status_json(root, "prod/web/frontend")["prod/web/frontend"]
    assert frontend["other_channels"] == [{"channel": "staging", "newest": "1.2.0", "newer": False}]
