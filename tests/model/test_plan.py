"""From rules and instructions to a plan (podrelease.model.plan), on hand-made objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from podrelease.core.errors import UserErrors
from podrelease.core.names import Label
from podrelease.model.instructions import Instruction, Parameters, Pin
from podrelease.model.plan import make_plan
from podrelease.model.rules import App, BuildFile, ImageRule, PodRule, VolumeMount

ROOT = Path("/release")
WEB_BUILD = ROOT / "shipyard/web/build.yaml"
BASE_BUILD = ROOT / "shipyard/base/build.yaml"

FRONTEND = Label("web", "frontend")
LOGSHIP = Label("web", "logship")
STATIC = Label("web", "static")
OS = Label("base", "os")


def image(label: Label, build_file: Path = WEB_BUILD, **kwargs) -> ImageRule:
    shown = str(build_file.relative_to(ROOT))
    return ImageRule(label, build_file, 3, label.name, shown=shown, **kwargs)


def web(frontend: ImageRule | None = None, pod_images: tuple[Label, ...] = (FRONTEND, LOGSHIP)) -> BuildFile:
    pod = PodRule(
        FRONTEND, WEB_BUILD, 12, images=pod_images, volumes=(VolumeMount("static", STATIC, "/srv/static"),),
        shown="shipyard/web/build.yaml", image_lines=(13,) * len(pod_images),
    )
    images = {"frontend": frontend or image(FRONTEND), "logship": image(LOGSHIP)}
    return BuildFile(WEB_BUILD, "web", images=images, pods={"frontend": pod})


def base() -> BuildFile:
    return BuildFile(BASE_BUILD, "base", images={"os": image(OS, BASE_BUILD, app=App(exec=("/bin/init",), user="100"))})


def instruction(version: str, channel: str = "prod", **kwargs) -> Instruction:
    shown = f"channels/{channel}/web/frontend/{version}.yaml"
    kwargs.setdefault("rule", FRONTEND)
    kwargs.setdefault("rule_line", None)
    return Instruction(ROOT / shown, shown, channel, FRONTEND, version, **kwargs)


def refusals(build_files, instructions, defaults=None) -> list[str]:
    with pytest.raises(UserErrors) as raised:
        make_plan(build_files, instructions, defaults)
    return [str(e) for e in raised.value.errors]


# ---------------------------------------------------------------- versions


def test_images_and_volumes_default_to_the_pod_version():
    plan = make_plan([web()], [instruction("1.2.0")])
    pod = plan.pods["prod/web/frontend/1.2.0"]
    assert [(b.rule.label, b.version) for b in pod.images] == [(FRONTEND, "1.2.0"), (LOGSHIP, "1.2.0")]
    assert [(v.mount.label, v.version) for v in pod.volumes] == [(STATIC, "1.2.0")]
    assert set(plan.images) == {"web/frontend/1.2.0", "web/logship/1.2.0"}
    assert set(plan.volumes) == {"web/static/1.2.0"}


def test_pins_override_the_pod_version():
    pins = dict(images=(Pin(LOGSHIP, "1.1.0", 2),), volumes=(Pin(STATIC, "1.0.0", 3),))
    pod = make_plan([web()], [instruction("1.2.0", **pins)]).pods["prod/web/frontend/1.2.0"]
    assert [b.version for b in pod.images] == ["1.2.0", "1.1.0"]
    assert [v.version for v in pod.volumes] == ["1.0.0"]


def test_a_volume_check_names_the_line_of_the_pin_that_needs_it():
    plan = make_plan([web()], [instruction("1.2.0", volumes=(Pin(STATIC, "1.0.0", 3),)), instruction("1.3.0")])
    assert plan.volumes["web/static/1.0.0"].needed_by == ("channels/prod/web/frontend/1.2.0.yaml:3",)
    assert plan.volumes["web/static/1.3.0"].needed_by == ("channels/prod/web/frontend/1.3.0.yaml",)


def test_an_image_version_shared_by_two_pods_is_planned_once():
    pin = (Pin(FRONTEND, "1.1.0", 2), Pin(LOGSHIP, "1.1.0", 2))
    plan = make_plan([web()], [instruction("1.2.0", images=pin), instruction("1.3.0", images=pin)])
    assert set(plan.images) == {"web/frontend/1.1.0", "web/logship/1.1.0"}
    first, second = plan.pods["prod/web/frontend/1.2.0"], plan.pods["prod/web/frontend/1.3.0"]
    assert first.images[0] is second.images[0]


def test_a_volume_version_shared_by_two_pods_lists_both_as_needing_it():
    pin = (Pin(STATIC, "1.0.0", 4),)
    plan = make_plan([web()], [instruction("1.2.0", volumes=pin), instruction("1.0.0", channel="staging", volumes=pin)])
    assert plan.volumes["web/static/1.0.0"].needed_by == (
        "channels/prod/web/frontend/1.2.0.yaml:4",
        "channels/staging/web/frontend/1.0.0.yaml:4",
    )


def test_every_instruction_becomes_a_release_with_its_tip():
    plan = make_plan([web()], [instruction("1.2.0"), instruction("1.0.0", channel="staging")])
    assert set(plan.releases) == {"prod/web/frontend/1.2.0", "staging/web/frontend/1.0.0"}
    assert plan.releases["prod/web/frontend/1.2.0"].tip is plan.tips["prod/web/frontend"]


# ---------------------------------------------------------------- mistakes, with the instruction's path


def test_a_missing_pod_rule_is_an_error_at_the_instruction():
    lines = refusals([web()], [instruction("1.2.0", rule=Label("web", "backend"), rule_line=1)])
    assert lines == ["channels/prod/web/frontend/1.2.0.yaml:1: no pod rule //web:backend (looked in shipyard/web/build.yaml)"]


def test_a_pin_for_an_image_not_in_the_rule_is_an_error_at_the_pin():
    lines = refusals([web()], [instruction("1.2.0", images=(Pin(Label("web", "proxy"), "1.0.0", 2),))])
    assert lines == ["channels/prod/web/frontend/1.2.0.yaml:2: image //web:proxy is not part of pod rule //web:frontend"]


def test_a_pin_for_a_volume_not_in_the_rule_is_an_error_at_the_pin():
    lines = refusals([web()], [instruction("1.2.0", volumes=(Pin(Label("web", "uploads"), "1.0.0", 5),))])
    assert lines == ["channels/prod/web/frontend/1.2.0.yaml:5: volume //web:uploads is not part of pod rule //web:frontend"]


def test_two_instructions_naming_the_same_version_differently_are_an_error():
    lines = refusals([web()], [instruction("1.0"), instruction("1.0.0")])
    assert lines == [
        "channels/prod/web/frontend/1.0.0.yaml: same version as channels/prod/web/frontend/1.0.yaml: "
        "one pod version has one instruction"
    ]


def test_the_same_version_in_two_channels_is_not_an_error():
    plan = make_plan([web()], [instruction("1.0"), instruction("1.0.0", channel="staging")])
    assert set(plan.pods) == {"prod/web/frontend/1.0", "staging/web/frontend/1.0.0"}


def test_a_pod_rule_using_an_undefined_image_is_an_error_at_the_rule():
    lines = refusals([web(pod_images=(FRONTEND, Label("web", "proxy")))], [instruction("1.2.0")])
    assert lines == ["shipyard/web/build.yaml:13: pod //web:frontend uses image //web:proxy, which no build file defines"]


def test_every_bad_instruction_is_reported_and_a_shared_mistake_once():
    bad_rule = dict(rule=Label("web", "backend"), rule_line=1)
    lines = refusals([web()], [
        instruction("1.2.0", **bad_rule),
        instruction("1.3.0", images=(Pin(Label("web", "proxy"), "1.0.0", 2),)),
        instruction("1.2.0", channel="staging", **bad_rule),
    ])
    assert lines == [
        "channels/prod/web/frontend/1.2.0.yaml:1: no pod rule //web:backend (looked in shipyard/web/build.yaml)",
        "channels/prod/web/frontend/1.3.0.yaml:2: image //web:proxy is not part of pod rule //web:frontend",
        "channels/staging/web/frontend/1.2.0.yaml:1: no pod rule //web:backend (looked in shipyard/web/build.yaml)",
    ]


# ---------------------------------------------------------------- parameters


def test_channel_defaults_merge_under_the_instruction_parameters():
    defaults = {"prod": Parameters(args=("--workers=4",), environment=(("LOG_LEVEL", "info"), ("APP_ENV", "production")))}
    own = Parameters(args=("--verbose",), environment=(("LOG_LEVEL", "debug"),))
    pod = make_plan([web()], [instruction("1.2.0", parameters=own)], defaults).pods["prod/web/frontend/1.2.0"]
    assert pod.parameters == Parameters(
        args=("--workers=4", "--verbose"), environment=(("LOG_LEVEL", "debug"), ("APP_ENV", "production")),
    )


def test_another_channel_defaults_do_not_apply():
    defaults = {"prod": Parameters(args=("--workers=4",))}
    pod = make_plan([web()], [instruction("1.0.0", channel="staging")], defaults).pods["staging/web/frontend/1.0.0"]
    assert pod.parameters == Parameters()


# ---------------------------------------------------------------- revisions and yanking


def test_the_instruction_introducing_an_image_version_chooses_its_revision():
    pin = (Pin(FRONTEND, "1.1.0", 2),)
    plan = make_plan([web()], [
        instruction("1.0.9", images=pin, revision="aaaa1111", revision_line=1),
        instruction("1.1.0", revision="bbbb2222", revision_line=1),
    ])
    assert plan.revisions["web/frontend/1.1.0"].revision == "bbbb2222"
    assert plan.revisions["web/frontend/1.1.0"].owner


def test_a_yanked_instruction_does_not_choose_a_revision():
    pin = (Pin(FRONTEND, "1.1.0", 2),)
    plan = make_plan([web()], [
        instruction("1.1.0", revision="deadbeef", revision_line=1, yanked=True, reason="broken"),
        instruction("1.2.0", images=pin, revision="cafe1234", revision_line=1),
    ])
    assert plan.revisions["web/frontend/1.1.0"].revision == "cafe1234"
    assert plan.revisions["web/frontend/1.1.0"].shown == "channels/prod/web/frontend/1.2.0.yaml"


def test_a_yanked_instruction_alone_leaves_its_images_without_a_revision():
    plan = make_plan([web()], [instruction("1.1.0", revision="deadbeef", revision_line=1, yanked=True)])
    assert plan.revisions == {}


def test_a_tip_knows_its_yanked_versions():
    plan = make_plan([web()], [
        instruction("1.0.0"), instruction("1.1.0", yanked=True), instruction("1.2.0", yanked=True),
        instruction("1.1.0", channel="staging"),
    ])
    assert plan.tips["prod/web/frontend"].yanked == frozenset({"1.1.0", "1.2.0"})
    assert plan.tips["staging/web/frontend"].yanked == frozenset()


def test_there_is_one_tip_per_channel_and_pod():
    plan = make_plan([web()], [instruction("1.0.0"), instruction("1.1.0"), instruction("1.0.0", channel="staging")])
    assert set(plan.tips) == {"prod/web/frontend", "staging/web/frontend"}


# ---------------------------------------------------------------- from: base images


def test_a_base_image_is_planned_before_the_image_starting_from_it():
    frontend = image(FRONTEND, base=OS, base_version="1.0.0", app=App(exec=("/srv/serve",), given=frozenset({"exec"})))
    plan = make_plan([base(), web(frontend)], [instruction("1.2.0")])
    names = list(plan.images)
    assert names.index("base/os/1.0.0") < names.index("web/frontend/1.2.0")
    assert plan.images["web/frontend/1.2.0"].base is plan.images["base/os/1.0.0"]


def test_an_image_inherits_the_app_settings_it_does_not_give_from_its_base():
    frontend = image(FRONTEND, base=OS, base_version="1.0.0", app=App(exec=("/srv/serve",), given=frozenset({"exec"})))
    build = make_plan([base(), web(frontend)], [instruction("1.2.0")]).images["web/frontend/1.2.0"]
    assert (build.rule.app.exec, build.rule.app.user) == (("/srv/serve",), "100")


def test_a_base_image_takes_no_revision_from_the_image_built_on_it():
    # an older revision may not define the base at all: it is built from today's rule
    frontend = image(FRONTEND, base=OS, base_version="1.0.0")
    plan = make_plan([base(), web(frontend)], [instruction("1.2.0", revision="cafe1234", revision_line=1)])
    assert plan.revisions["web/frontend/1.2.0"].revision == "cafe1234"
    assert "base/os/1.0.0" not in plan.revisions


def test_a_base_image_no_build_file_defines_is_an_error_at_the_image():
    frontend = image(FRONTEND, base=OS, base_version="1.0.0")
    lines = refusals([web(frontend)], [instruction("1.2.0")])
    assert lines == ["shipyard/web/build.yaml:3: image //web:frontend starts from //base:os, which no build file defines"]


def test_images_starting_from_each_other_are_an_error_naming_the_cycle():
    frontend = image(FRONTEND, base=LOGSHIP, base_version="1.0.0")
    logship = image(LOGSHIP, base=FRONTEND, base_version="1.0.0")
    build_file = web(frontend)
    build_file.images["logship"] = logship
    lines = refusals([build_file], [instruction("1.2.0")])
    assert lines == ["shipyard/web/build.yaml:3: image //web:logship starts from itself: //web:frontend -> //web:logship -> //web:frontend"]
