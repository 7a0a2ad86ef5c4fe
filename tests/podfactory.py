"""Build release roots the way the spec lays them out, without running a release.

    root = ReleaseRoot(tmp_path / "release")
    frontend = root.image("web", "frontend", "1.1.0", files={"opt/app/run": b"..."})
    static = root.volume("web", "static", "1.0.0", {"assets.tar.gz": tarball({"index.html": b"hi"})})
    pod_dir = root.pod("prod", "web", "frontend", "1.2.0",
                       images=[frontend], volumes=[Mount("static", static, "/srv/static")],
                       files={"frontend.service": b"[Unit]\\n"})

Images are real appc ACIs (a gzip'd tar of `manifest` + `rootfs/`), their id
the sha512 of the uncompressed tar; pod directories hold `pod.json` (exactly
the spec's keys, every file pinned by sha512 and size) and relative symlinks
into `images/` and `volumes/`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Image:
    label_path: str
    name: str
    version: str
    dir: Path  # images/<label_path>/<name>/<version>
    id: str

    @property
    def label(self) -> str:
        return f"//{self.label_path}:{self.name}"


@dataclass(frozen=True)
class Volume:
    label_path: str
    name: str
    version: str
    dir: Path  # volumes/<label_path>/<name>/<version>

    @property
    def label(self) -> str:
        return f"//{self.label_path}:{self.name}"


@dataclass(frozen=True)
class Mount:
    name: str  # the volume's name in the pod
    volume: Volume
    path: str  # where apps see it


class _HashingGzipWriter(io.RawIOBase):
    """A write-only stream: hashes what it is given and writes it gzip'd to `out`."""

    def __init__(self, out, level: int):
        self.out = out
        self.hash = hashlib.sha512()
        self.z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.hash.update(data)
        self.out.write(self.z.compress(data))
        return len(data)

    def finish(self) -> str:
        self.out.write(self.z.flush())
        return self.hash.hexdigest()


def _info(name: str, size: int = 0, type_=tarfile.REGTYPE, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, type_, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def write_aci(path: Path, manifest: dict, files: dict[str, bytes], big: tuple[str, int] | None = None,
              level: int = 6) -> str:
    """Write a gzip'd ACI; returns its id. `big` adds a file of that many pseudo-random bytes, streamed."""
    with open(path, "wb") as out:
        writer = _HashingGzipWriter(out, level)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=2).encode()
            tar.addfile(_info("manifest", len(data)), io.BytesIO(data))
            tar.addfile(_info("rootfs", type_=tarfile.DIRTYPE, mode=0o755))
            entries = dict(files)
            if big is not None:
                entries[big[0]] = b""
            seen_dirs: set[str] = set()
            for name in sorted(entries):
                parts = name.split("/")
                for i in range(1, len(parts)):
                    d = "rootfs/" + "/".join(parts[:i])
                    if d not in seen_dirs:
                        seen_dirs.add(d)
                        tar.addfile(_info(d, type_=tarfile.DIRTYPE, mode=0o755))
                if big is not None and name == big[0]:
                    tar.addfile(_info("rootfs/" + name, big[1], mode=0o755), _RandomReader(big[1]))
                else:
                    tar.addfile(_info("rootfs/" + name, len(entries[name]), mode=0o755), io.BytesIO(entries[name]))
        digest = writer.finish()
    return "sha512-" + digest


class _RandomReader(io.RawIOBase):
    """`size` pseudo-random bytes, produced 1 MiB at a time."""

    def __init__(self, size: int, seed: int = 1):
        self.left = size
        self.rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left, 1 << 20)
        self.left -= n
        return self.rng.randbytes(n)


def tarball(members: dict[str, bytes], gz: bool = True) -> bytes:
    """A volume tarball holding regular files (and their directories)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        dirs = set()
        for name in sorted(members):
            parts = name.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_info(d, type_=tarfile.DIRTYPE, mode=0o755))
            tar.addfile(_info(name, len(members[name])), io.BytesIO(members[name]))
    return buf.getvalue()


def hostile_tarball(kind: str) -> bytes:
    """A gzip'd tarball with one bad member, next to a harmless file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_info("ok.txt", 3), io.BytesIO(b"ok\n"))
        if kind == "dotdot":
            tar.addfile(_info("../escaped.txt", 4), io.BytesIO(b"bad\n"))
        elif kind == "absolute":
            tar.addfile(_info("/tmp/absolute.txt", 4), io.BytesIO(b"bad\n"))
        elif kind == "symlink-escape":
            link = _info("escape", type_=tarfile.SYMTYPE, mode=0o777)
            link.linkname = "../../../../etc"
            tar.addfile(link)
        elif kind == "symlink-absolute":
            link = _info("passwd", type_=tarfile.SYMTYPE, mode=0o777)
            link.linkname = "/etc/passwd"
            tar.addfile(link)
        elif kind == "hardlink-escape":
            link = _info("shadow", type_=tarfile.LNKTYPE)
            link.linkname = "../../etc/shadow"
            tar.addfile(link)
        elif kind == "setuid":
            tar.addfile(_info("bin/su", 4, mode=0o4755), io.BytesIO(b"bad\n"))
        elif kind == "setgid":
            tar.addfile(_info("bin/sg", 4, mode=0o2755), io.BytesIO(b"bad\n"))
        elif kind == "device":
            dev = _info("dev/sda", type_=tarfile.BLKTYPE, mode=0o600)
            dev.devmajor, dev.devminor = 8, 0
            tar.addfile(dev)
        elif kind == "fifo":
            tar.addfile(_info("pipe", type_=tarfile.FIFOTYPE))
        elif kind == "link-then-write-through":
            link = _info("d/up", type_=tarfile.SYMTYPE, mode=0o777)
            link.linkname = ".."
            tar.addfile(link)
            later = _info("x", type_=tarfile.SYMTYPE, mode=0o777)
            later.linkname = "d/up/.."
            tar.addfile(later)
        else:
            raise ValueError(kind)
    return buf.getvalue()


def _sha512(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def pin(path: Path) -> dict:
    """`{"sha512", "size"}` of a file as stored: how pod.json pins it."""
    return {"sha512": _sha512(path), "size": path.stat().st_size}


def _join(*parts: str) -> Path:
    return Path(*[p for p in parts if p])


@dataclass
class ReleaseRoot:
    root: Path
    apps: dict[str, dict] = field(default_factory=dict)  # image id -> appc app

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def image(self, label_path: str, name: str, version: str, files: dict[str, bytes] | None = None,
              big: int = 0, level: int = 6) -> Image:
        """A built image at images/<label_path>/<name>/<version>/ (image.aci + sha512)."""
        where = self.root / _join("images", label_path, name, version)
        where.mkdir(parents=True)
        app = {"exec": [f"/opt/{name}/bin/run"], "user": "0", "group": "0"}
        manifest = {
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": f"example.com/{label_path + '/' if label_path else ''}{name}",
            "labels": [{"name": "version", "value": version}, {"name": "os", "value": "linux"},
                       {"name": "arch", "value": "amd64"}],
            "app": app,
        }
        files = files if files is not None else {f"opt/{name}/bin/run": f"#!/bin/sh\necho {name} {version}\n".encode()}
        image_id = write_aci(where / "image.aci", manifest, files,
                             big=(f"opt/{name}/data.bin", big) if big else None, level=level)
        (where / "sha512").write_text(image_id[len("sha512-"):] + "\n")
        self.apps[image_id] = app
        return Image(label_path, name, version, where, image_id)

    def volume(self, label_path: str, name: str, version: str, files: dict[str, bytes]) -> Volume:
        """A provided volume at volumes/<label_path>/<name>/<version>/ holding `files`."""
        where = self.root / _join("volumes", label_path, name, version)
        for rel, data in files.items():
            (where / rel).parent.mkdir(parents=True, exist_ok=True)
            (where / rel).write_bytes(data)
        return Volume(label_path, name, version, where)

    def pod(self, channel: str, label_path: str, name: str, version: str, images: list[Image],
            volumes: list[Mount] = (), files: dict[str, bytes] | None = None, revision: str | None = "9f1c2e7",
            args: list[str] = ()) -> Path:
        """The pod directory channels/<channel>/<label_path>/<name>/<version>/, as a release writes it."""
        pod_dir = self.root / _join("channels", channel, label_path, name, version)
        pod_dir.mkdir(parents=True)
        files = files if files is not None else {f"{name}.service": b"[Unit]\nDescription=test\n"}
        image_entries = []
        apps = []
        for image in images:
            os.symlink(os.path.relpath(image.dir, pod_dir), pod_dir / image.name)
            image_entries.append({"label": image.label, "name": image.name, "version": image.version,
                                  "id": image.id, "path": f"{image.name}/image.aci",
                                  "aci": pin(image.dir / "image.aci")})
            app = dict(self.apps[image.id])
            app["exec"] = list(app["exec"]) + list(args)
            apps.append({"name": image.name, "image": {"id": image.id}, "app": app,
                         "mounts": [{"volume": m.name, "path": m.path} for m in volumes]})
        volume_entries = []
        for mount in volumes:
            os.symlink(os.path.relpath(mount.volume.dir, pod_dir), pod_dir / mount.name)
            vfiles = []
            for path in sorted(p for p in mount.volume.dir.rglob("*") if p.is_file()):
                rel = path.relative_to(mount.volume.dir).as_posix()
                vfiles.append({"path": f"{mount.name}/{rel}", **pin(path)})
            volume_entries.append({"label": mount.volume.label, "name": mount.name,
                                   "version": mount.volume.version, "files": vfiles})
        for rel, data in files.items():
            (pod_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (pod_dir / rel).write_bytes(data)
        pod_json = {
            "name": f"//{label_path}:{name}",
            "version": version,
            "channel": channel,
            "revision": revision,
            "images": image_entries,
            "volumes": volume_entries,
            "files": [{"path": rel, **pin(pod_dir / rel)} for rel in sorted(files)],
            "manifest": {
                "acKind": "PodManifest",
                "acVersion": "0.8.11",
                "apps": apps,
                "volumes": [{"name": m.name, "kind": "host", "readOnly": True} for m in volumes],
            },
        }
        (pod_dir / "pod.json").write_text(json.dumps(pod_json, indent=2) + "\n")
        return pod_dir


def standard_pod(root: ReleaseRoot, version: str = "1.2.0", image_version: str = "1.1.0",
                 channel: str = "prod", label_path: str = "web", name: str = "frontend",
                 volume_files: dict[str, bytes] | None = None, volume_version: str = "1.0.0",
                 big: int = 0, level: int = 6) -> Path:
    """//web:frontend with one image and one volume (a tarball), reusing existing ones."""
    image_dir = root.root / _join("images", label_path, name, image_version)
    if image_dir.is_dir():
        image_id = "sha512-" + (image_dir / "sha512").read_text().strip()
        image = Image(label_path, name, image_version, image_dir, image_id)
    else:
        image = root.image(label_path, name, image_version, big=big, level=level)
    volume_dir = root.root / _join("volumes", label_path, "static", volume_version)
    if volume_dir.is_dir():
        if volume_files is not None:
            raise ValueError(f"{volume_dir} exists: volumes are immutable, pick another volume_version")
        volume = Volume(label_path, "static", volume_version, volume_dir)
    else:
        volume_files = volume_files if volume_files is not None else {
            "assets.tar.gz": tarball({"index.html": b"<h1>hello</h1>\n", "css/site.css": b"body{}\n"}),
        }
        volume = root.volume(label_path, "static", volume_version, volume_files)
    return root.pod(channel, label_path, name, version, images=[image],
                    volumes=[Mount("static", volume, "/srv/static")])


def tree(root: Path) -> dict[str, tuple]:
    """A comparable picture of a directory: type, mode and content (or link target) of every entry."""
    picture = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if full.is_symlink():
                picture[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                picture[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                picture[rel] = ("file", oct(st.st_mode & 0o7777), _sha512(full))
    return picture


def gunzip_size(path: Path) -> int:
    with gzip.open(path, "rb") as f:
        return sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
