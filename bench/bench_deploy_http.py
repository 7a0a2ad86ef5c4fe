"""Benchmark: `ops-onboard deploy <URL>` against `curl` fetching the same files.

Builds a release root holding a pod with one ~200 MB image (pseudo-random
content, gzip'd: like compiled code and assets, it barely compresses), serves
it with nginx on 127.0.0.1, then alternates, for a few rounds:

- curl: one `curl` process downloading every file the pod needs (pod.json,
  image.aci, sha512, the volume tarball, the pod file) to a temporary
  directory, over one connection;
- deploy: the `ops-onboard` console script deploying the pod by URL into a
  fresh `--root`: download, inflate and hash the image, hash and extract the
  volume, fsync, rename into place.

Both read from nginx's page cache (a warm-up round runs first). It prints
each round and the ratio of the medians: deploy throughput / curl throughput
(goal >= 0.9), both measured in this run. For context it also prints what
bounds the deploy on this machine: the CPU time a deploy needs (two sha512
passes over the image, as stored and inflated, besides what curl does),
spread over the machine's CPUs, and an ops-onboard's start-up alone.

    python bench/bench_deploy_http.py [--size-mb 200] [--rounds 5] [--level 1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the release-root factory and the nginx runner

from httpservers import Nginx  # noqa: E402
from podfactory import ReleaseRoot, gunzip_size, standard_pod  # noqa: E402

POD = "channels/prod/web/frontend/1.2.0"


def console_script() -> str:
    beside = Path(sys.executable).parent / "ops-onboard"
    return str(beside) if beside.exists() else (shutil.which("ops-onboard") or "ops-onboard")


def sha512_speed(size: int = 64 << 20) -> float:
    """Bytes per second hashlib's sha512 does here, 1 MiB at a time."""
    data = memoryview(os.urandom(size))
    best = 0.0
    for _ in range(3):
        h = hashlib.sha512()
        start = time.perf_counter()
        for i in range(0, size, 1 << 20):
            h.update(data[i:i + (1 << 20)])
        best = max(best, size / (time.perf_counter() - start))
    return best


def pod_files(pod_dir: Path) -> list[str]:
    import json

    doc = json.loads((pod_dir / "pod.json").read_text())
    files = ["pod.json"]
    for image in doc["images"]:
        files += [image["path"], image["path"].rsplit("/", 1)[0] + "/sha512"]
    for volume in doc["volumes"]:
        files += [f["path"] for f in volume["files"]]
    return files + [f["path"] if isinstance(f, dict) else f for f in doc["files"]]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPU: dict[str, list[float]] = {"curl": [], "deploy": []}


def run_curl(base: str, files: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    command = ["curl", "--silent", "--show-error", "--fail"]
    for i, rel in enumerate(files):
        command += ["-o", str(out / f"{i}"), f"{base}/{POD}/{rel}"]
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run(command, check=True)
    elapsed = time.perf_counter() - start
    CPU["curl"].append(children_cpu() - cpu)
    return elapsed


def run_curl_verify(base: str, out: Path) -> float:
    """For context: a shell pipeline doing the image's download and its verification."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    url = f"{base}/{POD}/frontend/image.aci"
    script = f"set -o pipefail; curl -sS --fail {url} | tee {out}/image.aci | gzip -dc | sha512sum >/dev/null"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - start


def installed_env() -> dict[str, str]:
    """ops-onboard as a host runs it: from cached bytecode, as a package install leaves it.

    An environment with PYTHONDONTWRITEBYTECODE (a CI runner, a container) would
    have every run compile podrelease's thirty-odd modules again: tens of
    milliseconds no installed ops-onboard spends. So the bench compiles them once
    and lets the runs read them."""
    import podrelease

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(podrelease.__file__).parent)], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


ENV: dict[str, str] = {}


def startup() -> float:
    """Seconds an ops-onboard takes to start and do nothing (`--help`), best of five."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([console_script(), "--help"], check=True, stdout=subprocess.DEVNULL, env=ENV)
        best = min(best, time.perf_counter() - start)
    return best


def run_deploy(url: str, root: Path) -> float:
    shutil.rmtree(root, ignore_errors=True)
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run([console_script(), "--root", str(root), "deploy", "--no-progress", "--no-start", url],
                   check=True, stdout=subprocess.DEVNULL, env=ENV)
    elapsed = time.perf_counter() - start
    CPU["deploy"].append(children_cpu() - cpu)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of the image's big file (MiB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--level", type=int, default=1, help="gzip level of the image (default 1)")
    args = parser.parse_args()
    if not shutil.which("curl"):
        print("curl is not installed", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-deploy-http-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        release = ReleaseRoot(tmp_path / "release")
        pod_dir = standard_pod(release, big=args.size_mb << 20, level=args.level)
        files = pod_files(pod_dir)
        total = sum((pod_dir / rel).stat().st_size for rel in files)
        image = pod_dir / "frontend/image.aci"
        uncompressed = gunzip_size(image)
        print(f"setup: image.aci {image.stat().st_size / 1e6:.1f} MB (gzip level {args.level} of pseudo-random data), "
              f"{total / 1e6:.1f} MB in {len(files)} files, built in {time.perf_counter() - t0:.1f}s")

        ENV.update(installed_env())
        with Nginx(release.root, tmp_path / "nginx") as nginx:
            url = f"{nginx.url}/{POD}/pod.json"
            run_curl(nginx.url, files, tmp_path / "curl")  # warm-up: page cache, nginx
            run_deploy(url, tmp_path / "ops")
            curl_times, deploy_times, pipe_times = [], [], []
            for n in range(1, args.rounds + 1):
                c = run_curl(nginx.url, files, tmp_path / "curl")
                d = run_deploy(url, tmp_path / "ops")
                p = run_curl_verify(nginx.url, tmp_path / "curl")
                curl_times.append(c)
                deploy_times.append(d)
                pipe_times.append(p)
                print(f"round {n}: curl {c:.3f}s ({total / c / 1e6:.0f} MB/s)   "
                      f"ops-onboard deploy {d:.3f}s ({total / d / 1e6:.0f} MB/s)   ratio {c / d:.2f}x   "
                      f"[curl|tee|gzip -dc|sha512sum {p:.3f}s]")

        curl_median, deploy_median = statistics.median(curl_times), statistics.median(deploy_times)
        pipe_median = statistics.median(pipe_times)
        ratio = curl_median / deploy_median
        print(f"median: curl {total / curl_median / 1e6:.0f} MB/s, ops-onboard deploy {total / deploy_median / 1e6:.0f} MB/s "
              f"(download + inflate + sha512 + extract + fsync + rename)")
        print(f"for context: curl | tee | gzip -dc | sha512sum on the image alone: "
              f"{image.stat().st_size / pipe_median / 1e6:.0f} MB/s (ops-onboard is {pipe_median / deploy_median:.2f}x as fast)")
        sha = sha512_speed()
        print(f"for context: sha512 alone on this CPU: {sha / 1e6:.0f} MB/s ({uncompressed / sha:.2f}s for the image's "
              f"{uncompressed / 1e6:.0f} MB uncompressed tar, its id); CPU time per run (user+sys, median): "
              f"curl {statistics.median(CPU['curl'][1:]):.2f}s, ops-onboard deploy {statistics.median(CPU['deploy'][1:]):.2f}s "
              f"on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        cpus = len(os.sched_getaffinity(0))
        deploy_cpu, curl_cpu = statistics.median(CPU["deploy"][1:]), statistics.median(CPU["curl"][1:])
        start = startup()
        # curl is one thread that keeps its CPU busy: idle, its wall time is about its CPU time.
        print(f"for context: an ops-onboard starts in {start:.3f}s; a deploy needs {deploy_cpu:.2f} CPU-seconds, "
              f"curl {curl_cpu:.2f} ({curl_cpu / deploy_cpu:.2f}x: where every CPU is busy, the ratio tends to this); "
              f"spread over {cpus} idle CPUs a deploy takes at least {deploy_cpu / cpus:.3f}s: "
              f"at best {curl_cpu / (deploy_cpu / cpus):.2f}x curl on this machine")
        print(f"ratio: {ratio:.2f}x curl's throughput (goal >= 0.9x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
