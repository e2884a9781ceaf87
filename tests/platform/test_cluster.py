"""The local embedded Ray instance listens on 127.0.0.1 only (no metrics endpoint, no gRPC
server reachable from another machine)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

# Starts Ray the way spx does, runs one task (so a worker process is up), then waits.
DRIVER = textwrap.dedent(
    """
    import sys, time
    import ray
    from spx.platform import cluster
    cluster.connect(None)
    ray.get(ray.remote(lambda: 1).remote())
    time.sleep(3)  # the dashboard agent opens its metrics endpoint after the node is up
    print("ready", flush=True)
    sys.stdin.readline()
    cluster.shutdown()
    """
)
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def _listeners(pids: set[int]) -> list[tuple[str, int]]:
    """(local address, pid) of every listening TCP socket the processes hold (ss -ltnp)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        for part in line.split("pid=")[1:]:
            pid = int(part.split(",")[0])
            if pid in pids:
                found.append((cols[3], pid))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_local_ray_listens_on_loopback_only():
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        listening = _listeners(_descendants(proc.pid))
        assert len({pid for _, pid in listening}) >= 3  # GCS, raylet, driver, workers, agent
        exposed = [(addr, pid) for addr, pid in listening if not addr.startswith(LOOPBACK)]
        assert exposed == []
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=120)


def test_no_address_starts_its_own_instance_whatever_ray_start_left_behind():
    """A bare ray.init() joins the cluster named in <ray temp>/ray_current_cluster, even a
    dead one (it then hangs); spx's local instance must start fresh instead."""
    root = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths
    try:
        (root / "ray").mkdir()
        (root / "ray" / "ray_current_cluster").write_text("192.0.2.2:6381")  # TEST-NET
        code = "import ray\nfrom spx.platform import cluster\ncluster.connect(None)\n"
        code += "print(ray.get(ray.remote(lambda: 41).remote()) + 1)\ncluster.shutdown()\n"
        env = {**os.environ, "RAY_TMPDIR": str(root)}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "42"
    finally:
        shutil.rmtree(root, ignore_errors=True)
