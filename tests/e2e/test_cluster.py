"""A real two-node Ray cluster on this host: trials spread over both nodes, and when one
node dies its trial is rescheduled on the other from its checkpoint and the sweep ends.

Both nodes are started with `ray start` (1 CPU each, every port chosen free, never 6379)
in a temporary folder of their own; cleanup kills only the processes whose command line
names that folder or this node's ports, never `ray stop` (which would end every Ray
instance on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from helpers import spx_exe, wait_for

from spx.platform.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SWEEP = """
name: two-nodes
task: digits-mlp
fixed: {train.steps: 3000, train.report_every: 50, train.checkpoint_every: 100,
        model.width: 16}
parameters: {train.seed: {values: [0, 1, 2, 3]}}
resources: {concurrent: 2, cpus_per_worker: 1}
retries: 1
"""

NODES = """
import json, ray
ray.init(address="{address}", logging_level="ERROR")
print(json.dumps([
    {{"id": n["NodeID"], "second": "spx_second" in n["Resources"], "alive": n["Alive"]}}
    for n in ray.nodes()
]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Every port a node binds, chosen free, so nothing collides with other Ray instances."""
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    )
    return [arg for name in names for arg in (name, str(_free_port()))]


class Cluster:
    def __init__(self) -> None:
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.temp = tempfile.mkdtemp(prefix="spxray-", dir="/tmp")  # short: socket paths
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.second = _node_ports()
        # A private test cluster: no token (the default head would want one on every node).
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env["RAY_AUTH_MODE"] = "disabled"

    def _ray(self, *args: str) -> None:
        proc = subprocess.run(
            [self.ray, *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def start(self) -> None:
        common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        self._ray(
            "start", "--head", "--port", str(self.port), "--temp-dir", self.temp,
            "--include-dashboard", "false", "--ray-client-server-port", str(_free_port()),
            *common, *_node_ports(),
        )  # fmt: skip
        self._ray(
            "start", "--address", self.address, "--resources", '{"spx_second": 1}',
            *common, *self.second,
        )  # fmt: skip

    def nodes(self) -> list[dict]:
        code = NODES.format(address=self.address)
        proc = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def kill_second(self) -> None:
        """SIGKILL the second node's raylet (a machine gone): its workers die with it."""
        port = self.second[self.second.index("--node-manager-port") + 1]
        raylets = [p for p in self._mine() if f"--node_manager_port={port}" in _cmdline(p)]
        assert raylets, "the second node's raylet was not found"
        for p in raylets:
            p.kill()

    def _mine(self) -> list[psutil.Process]:
        """This cluster's processes: they name its folder or its GCS address (any host IP)."""
        gcs = re.compile(rf"[0-9.]+:{self.port}\b")
        found = []
        for p in psutil.process_iter():
            line = _cmdline(p)
            if self.temp in line or gcs.search(line):
                found.append(p)
        return found

    def stop(self) -> None:
        for p in self._mine():
            with contextlib.suppress(psutil.Error):
                p.kill()
        shutil.rmtree(self.temp, ignore_errors=True)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _trials(home: Path):
    if not (home / "spx.db").exists():
        return []
    try:
        with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
            return store.trials(store.get_sweep("two-nodes").id)
    except Exception:
        return []


def test_trials_spread_over_two_nodes_and_survive_losing_one(cluster, tmp_path):
    nodes = cluster.nodes()
    assert len(nodes) == 2 and all(n["alive"] for n in nodes)
    head = next(n["id"] for n in nodes if not n["second"])
    second = next(n["id"] for n in nodes if n["second"])
    home = tmp_path / "home"
    (tmp_path / "s.yaml").write_text(SWEEP)
    env = {**cluster.env, "SPX_HOME": str(home)}
    launch = [spx_exe(), "sweep", "launch", "s.yaml", "--plain", "--address", cluster.address]
    began = time.monotonic()
    proc = subprocess.Popen(
        launch, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        # Both nodes run a trial at once (one CPU each, two trials at a time).
        running = wait_for(
            lambda: (
                {t.node_id: t for t in _trials(home) if t.status == "RUNNING" and t.node_id}
                if len({t.node_id for t in _trials(home) if t.status == "RUNNING"} - {None}) == 2
                else None
            ),
            timeout=300,
        )
        assert set(running) == {head, second}
        victim = running[second].number
        wait_for(
            lambda: any(t.number == victim and (t.step or 0) >= 300 for t in _trials(home)),
            timeout=300,
        )
        killed = time.monotonic()
        cluster.kill_second()
        out, _ = proc.communicate(timeout=600)
        ended = time.monotonic()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
    assert proc.returncode == 0, out
    assert f"trial {victim} LOST" in out
    trials = _trials(home)
    assert [(t.number, t.status) for t in trials] == [(n, "COMPLETED") for n in range(4)]
    moved = trials[victim]
    assert (moved.attempt, moved.node_id) == (2, head)  # rescheduled on the surviving node
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        for t in trials:  # every report, every metric, once (the key forbids twice)
            by_step: dict[int, set[str]] = {}
            for _, step, name, _ in store.metric_history([t.id]):
                by_step.setdefault(step, set()).add(name)
            assert set(by_step) == set(range(50, 3001, 50)), t.number
            assert all(names == by_step[3000] for names in by_step.values())
    print(f"launch to end {ended - began:.0f} s; node killed {killed - began:.0f} s in")
