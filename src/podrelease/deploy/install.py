"""The install transaction of `deploy`: a new version appears complete, or not at all.

Invariant (for what ops-onboard writes; damage done by others is for
`verify` to report): every version directory under pods/ is complete, its
record written last into the staged copy; every image directory under
images/ holds an image that matched its id when it was renamed in; `current`
names an installed version, or is absent.

How a deploy stays invisible until it is complete: everything is fetched,
checked and extracted inside `DIR/.tmp-deploy-*` (same filesystem); only then
are new image directories and the version directory renamed into place and
`current` replaced by a new symlink renamed over it. A failure before or
during those renames undoes the ones done, so DIR is left as it was; a crash
leaves at worst an unused image or a version that is not current, both
consistent (a crash between a rename and its fsync loses nothing that was
visible before). Repairing replaces a damaged image or version directory by
exchanging it with its new copy in one step (`renameat2` RENAME_EXCHANGE),
so even then a crash leaves the damaged one or the new one under that name,
and `current` never names a version that is gone.

Images whose pod.json entry pins an OCI manifest get their OCI layout
(`images/<id>/oci/`, see ocilayout.py) staged and checked with the rest,
inside the same image directory and the same renames.

DIR's lock is held only around the commit. `prepare` fetches and checks
without it (a slow download or a long hash blocks no other command): it
reads DIR to know what to reuse or repair, remembers which directories it
saw (device and inode), and writes only its own staging directory, which
`fsops.sweep` leaves alone while its process lives. `commit`, under the
lock, first checks DIR still holds what `prepare` saw, else raises `Changed`
and the store prepares again; then it renames. An image another deploy
installed meanwhile was checked by that deploy, and is used as it is.

`commit(..., make_current=False)` stops short of `current`: run.py then
runs the new version and switches `current` only once it is healthy; the
argument why a crash there leaves one version current, and the next
`start` running it, is run.py's docstring.

Before any of that, `prepare` settles the easy cases: the same pod.json
installed intact is left alone (made current if nothing is); installed but
damaged, it is installed again, replacing the damaged directories in the
same transaction.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..core.errors import ContractError
from ..core.fsops import exchange, fsync_dir, fsync_tree, make_dirs, sweep, write_file
from ..core.hashing import (
    AciIdCheck,
    Sha512Check,
    check_sha512_file,
    short,
)
from ..core.names import Label
from ..core.podjson import MAX_POD_JSON, PodJson, json_bytes, manifest_with_sources, parse_pod_json
from ..core.safetar import extract
from ..core.signing import SIGNATURE_NAME, signed_here
from . import ocilayout
from .checks import MAX_SHA512_FILE, ImageChecks, check_image, check_version
from .history import point_current
from .layout import (
    CURRENT,
    POD_MANIFEST,
    RECORD,
    Layout,
    current,
)
from .records import write_record
from .sources import TAR_SUFFIXES, Downloads, Source, open_source
from .trust import check_signed

if TYPE_CHECKING:
    from .fetching import HttpOptions


def is_tarball(name: str) -> bool:
    return name.endswith(TAR_SUFFIXES)


Identity = tuple[int, int]  # (st_dev, st_ino): which directory a name held when it was checked


def _identity(path: Path) -> Identity | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class Changed(ContractError):
    """DIR changed, between the checks done without its lock and the commit, in a way they relied on."""


@dataclass
class Prepared:
    """A deploy fetched and checked in its staging directory, waiting for DIR's lock to commit.

    `seen_version` and `seen_images` record which directories the checks
    found (None: absent); the commit holds only if DIR still has those.
    """

    pod: PodJson
    staging: Path
    final: Path
    vstage: Path | None  # None: the version is installed and intact, nothing to install
    problem: str | None  # why an installed version is installed again
    seen_version: Identity | None
    new_images: dict[str, Path] = field(default_factory=dict)  # image id -> its staged directory
    seen_images: dict[str, Identity | None] = field(default_factory=dict)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def prepare(layout: Layout, spec: str, http: HttpOptions | None, say: Callable[[str], None],
            signers: Path | None = None) -> Prepared:
    """Fetch and check everything the pod `spec` names into a new staging directory below DIR.

    Needs no lock: it only reads DIR (the installed version and images, to
    know what to reuse or repair) and writes its own staging directory,
    which `fsops.sweep` leaves alone while this process lives. The caller
    commits the result under DIR's lock, and discards it in any case.
    With `signers` (an allowed_signers file) the pod must be signed by a key
    it allows for the pod's channel (trust.py), or nothing else is done.
    """
    staging = layout.staging("deploy")
    try:
        return _prepare(layout, spec, staging, http, say, signers)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _prepare(layout: Layout, spec: str, staging: Path, http: HttpOptions | None,
             say: Callable[[str], None], signers: Path | None) -> Prepared:
    source = open_source(spec, staging, http)
    raw = source.read_pod_json(MAX_POD_JSON)
    pod = parse_pod_json(raw, source.describe("pod.json"))
    signature = check_signed(source, pod, signers) if signers is not None else None  # before anything else:
    # an untrusted pod.json decides nothing
    label, version = pod.label, pod.version
    if version == CURRENT:
        raise ContractError(f"{source.describe('pod.json')}: version 'current' is reserved by ops-onboard "
                           "(DIR/pods/<label_path>/<pod>/current names the active version)")
    final = layout.version_dir(label, version)
    check_no_conflict(layout, label, version)
    seen_version = _identity(final)
    checks = ImageChecks()
    problem = None
    if (final / RECORD).is_file():
        try:
            installed_raw: bytes | None = (final / "pod.json").read_bytes()
        except OSError:
            installed_raw = None
        if installed_raw is not None and installed_raw != raw:
            raise ContractError(
                f"{label} {version} is already installed from a different pod.json; "
                "undeploy it first, or release a new version"
            )
        problems = check_version(layout, final, checks) + _oci_problems(layout, pod)
        if signature is not None and not signed_here(final):  # installed before signatures were checked
            problems.append(f"{SIGNATURE_NAME}: missing")
        if not problems:
            return Prepared(pod, staging, final, None, None, seen_version)
        problem = problems[0]
        say(f"{label} {version} is installed but damaged ({problem}); installing it again")

    prepared = Prepared(pod, staging, final, None, problem, seen_version)
    prepared.seen_images = {image.id: _identity(layout.image_dir(image.id)) for image in pod.images}
    with Downloads(source) as downloads:  # images, volume and pod files all at once
        prepared.new_images = _stage_images(layout, pod, source, downloads, staging, checks, say)
        prepared.vstage = _stage_version(layout, pod, source, downloads, staging, final, signature)
    for image_dir in prepared.new_images.values():
        fsync_tree(image_dir)
    fsync_tree(prepared.vstage)
    return prepared


def commit(layout: Layout, prepared: Prepared, make_current: bool = True) -> str:
    """Put a prepared deploy in place (current too, if `make_current`); says what was done.

    DIR must be locked. Changed if DIR no longer holds what the checks
    relied on (the caller prepares again); an image that appeared meanwhile
    was checked by the deploy that renamed it in, and is used as it is.
    With `make_current` off the version is installed beside the current one,
    which `run.py` switches to only once the new version runs healthy.
    """
    pod, final = prepared.pod, prepared.final
    label, version = pod.label, pod.version
    check_no_conflict(layout, label, version)
    if _identity(final) != prepared.seen_version:
        raise Changed(f"{label} {version} was installed or removed meanwhile")
    if prepared.vstage is None:
        if make_current and current(final.parent) is None:
            point_current(final.parent, version)
            return f"{label} {version} is already installed and intact; it is now current"
        return f"{label} {version} is already installed and intact; nothing to do"
    new_images = {}
    for image_id, seen in prepared.seen_images.items():
        now = _identity(layout.image_dir(image_id))
        if image_id in prepared.new_images:
            if seen is None and now is not None:
                continue  # another deploy installed it, checked, meanwhile
            if now != seen:
                raise Changed(f"image {short(image_id)} was replaced meanwhile")
            new_images[image_id] = prepared.new_images[image_id]
        elif now != seen:
            raise Changed(f"image {short(image_id)} was removed or replaced meanwhile")
    _commit(layout, pod, final, prepared.vstage, new_images, prepared.staging, prepared.problem is not None,
            make_current)
    reused = len({i.id for i in pod.images}) - len(new_images)
    note = f" ({reused} image{'s' if reused != 1 else ''} already installed)" if reused else ""
    now_current = "; it is now current" if make_current else ""
    return f"deployed {label} {version} to {final}{note}{now_current}"


def _oci_problems(layout: Layout, pod: PodJson) -> list[str]:
    found = []
    for image in pod.images:
        why = ocilayout.problem(layout.image_dir(image.id), image)
        if why is not None:
            found.append(f"image {image.name} ({short(image.id)}): {why}")
    return found


def check_no_conflict(layout: Layout, label: Label, version: str) -> None:
    """The pod's directories must not be (inside) another pod's version or link."""
    final = layout.version_dir(label, version)
    path = layout.pods
    for part in final.relative_to(layout.pods).parts[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise ContractError(f"{label} {version}: {path} is in the way (not a directory)")
        if (path / RECORD).exists():
            other, other_version = layout.label_of(path)
            raise ContractError(f"{label} {version}: would be installed inside {other} {other_version} ({path})")
    link = final.parent / CURRENT
    if link.exists() and not link.is_symlink():
        raise ContractError(f"{label} {version}: {link} is in the way (a directory, not the current link)")
    if final.exists() and not (final / RECORD).is_file():
        raise ContractError(f"{label} {version}: {final} is in the way (it is not an installed version)")


# -- staging: everything is fetched and checked below `staging` first ---------------


def _make_dirs(top: Path, parts: tuple[str, ...]) -> Path:
    """`top/parts...`, never through a symbolic link below `top` (see `fsops.make_dirs`)."""
    path = top.joinpath(*parts)
    make_dirs(path, below=top)
    return path


def _stage_images(layout: Layout, pod: PodJson, source: Source, downloads: Downloads, staging: Path,
                  checks: ImageChecks, say: Callable[[str], None]) -> dict[str, Path]:
    """Fetch and check every image not already installed intact; id -> staged directory.

    The `image.aci`s are only queued on `downloads`: they are there once it is waited for."""
    staged: dict[str, Path] = {}
    for image in pod.images:
        if image.id in staged:
            continue
        if layout.image_dir(image.id).is_dir():
            damage = check_image(layout, image.id, checks)
            oci_damage = ocilayout.problem(layout.image_dir(image.id), image)
            if not damage and oci_damage is None:
                continue
            why = damage[0] if damage else oci_damage
            say(f"installed image {short(image.id)} is damaged or incomplete ({why}); fetching it again")
        where = _make_dirs(staging, ("images", image.id))
        sha512_text = source.read_small(image.sha512_path, MAX_SHA512_FILE)
        check_sha512_file(sha512_text, image.id, source.describe(image.sha512_path))
        write_file(where / "sha512", (image.digest + "\n").encode())
        shown = source.describe(image.path)
        downloads.fetch(image.path, where / "image.aci",
                        partial(AciIdCheck, image.id, shown, (image.aci.sha512, image.aci.size)), image.aci.size)
        if image.oci is not None:
            ocilayout.stage(source, image, where)
        staged[image.id] = where
    return staged


def _stage_version(layout: Layout, pod: PodJson, source: Source, downloads: Downloads, staging: Path,
                   final: Path, signature: bytes | None) -> Path:
    """The version directory, complete with its record, at `staging/version`; waits for `downloads`.
    With `signature` (checked), pod.json's signature is installed beside it."""
    vstage = _make_dirs(staging, ("version",))
    write_file(vstage / "pod.json", pod.raw)
    if signature is not None:
        write_file(vstage / SIGNATURE_NAME, signature)

    if pod.images:
        links = _make_dirs(vstage, ("images",))
        for image in pod.images:
            target = os.path.relpath(layout.image_dir(image.id), final / "images")
            os.symlink(target, links / image.name)

    fetched = staging / "downloads"
    fetched.mkdir()
    for volume in pod.volumes:
        for n, vfile in enumerate(volume.files):
            shown = source.describe(vfile.path)
            downloads.fetch(vfile.path, fetched / f"{volume.name}-{n}",
                            partial(Sha512Check, vfile.sha512, shown, vfile.size), vfile.size)
    for pod_file in pod.files:
        parts = PurePosixPath(pod_file.path).parts
        dest = _make_dirs(vstage, ("files", *parts[:-1])) / parts[-1]
        downloads.fetch(pod_file.path, dest,
                        partial(Sha512Check, pod_file.sha512, source.describe(pod_file.path), pod_file.size),
                        pod_file.size)
    downloads.wait()

    sources: dict[str, str] = {}
    for volume in pod.volumes:
        vdir = _make_dirs(vstage, ("volumes", volume.name))
        for n, vfile in enumerate(volume.files):
            shown = source.describe(vfile.path)
            download = fetched / f"{volume.name}-{n}"
            inner = PurePosixPath(vfile.inner)
            try:
                into = _make_dirs(vdir, inner.parent.parts)
            except ContractError as e:
                raise ContractError(f"{shown}: cannot be placed in volume {volume.name}: {e}") from None
            if is_tarball(inner.name):
                # Links must stay inside the whole volume, not only inside `into`: links
                # of two tarballs can together climb out of it.
                extract(download, into, shown, audit_root=vdir)
                download.unlink()
            else:
                dest = into / inner.name
                if os.path.lexists(dest):
                    raise ContractError(f"{shown}: volume {volume.name} already has {vfile.inner}")
                os.rename(download, dest)
        sources[volume.name] = str(final / "volumes" / volume.name)

    write_file(vstage / POD_MANIFEST, json_bytes(manifest_with_sources(pod, sources)))
    write_record(vstage, pod)
    return vstage


# -- commit: renames into place, each undone if a later step fails ------------------


def _commit(layout: Layout, pod: PodJson, final: Path, vstage: Path, new_images: dict[str, Path],
            staging: Path, repair: bool, make_current: bool) -> None:
    undo: list[Callable[[], None]] = []
    try:
        for created in make_dirs(layout.images):
            undo.append(created.rmdir)
        for image_id, staged in new_images.items():
            target = layout.image_dir(image_id)
            if target.exists():  # damaged: its new copy takes its place
                _replace(staged, target, staging / f"replaced-{image_id}", undo)
            else:
                os.rename(staged, target)
                undo.append(partial(os.rename, target, staged))
        if new_images:
            fsync_dir(layout.images)
        for created in make_dirs(final.parent):
            undo.append(created.rmdir)
        sweep(final.parent)
        if repair:
            _replace(vstage, final, staging / "replaced-version", undo)
        else:
            os.rename(vstage, final)
            undo.append(partial(os.rename, final, vstage))
        fsync_dir(final.parent)
        if make_current:
            point_current(final.parent, pod.version)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except OSError:
                pass
        raise


def _replace(new: Path, old: Path, aside: Path, undo: list[Callable[[], None]]) -> None:
    """Put the directory `new` in the place of the installed `old` (a damaged image or version).

    The two are exchanged in one step, so `old`'s name always holds a whole
    directory: a crash leaves either the damaged one (still current, as it
    was) or the new one, never a version that `current` names and that is
    gone. The damaged copy ends in the staging directory, removed with it.
    Where the file system cannot exchange, the old one is renamed aside
    first: a crash between the two renames then leaves the name empty.
    """
    try:
        exchange(new, old)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        os.rename(old, aside)
        undo.append(partial(os.rename, aside, old))
        os.rename(new, old)
        undo.append(partial(os.rename, old, new))
        return
    undo.append(partial(exchange, new, old))
