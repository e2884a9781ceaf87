"""A full disk under the driver: the sweep ends with its reason, and nothing is left behind.

The disks are real: small tmpfs mounts filled to the last byte (this needs root, or a
system that lets the test mount; without that the tests skip and say so). Two cases:

- SPX_HOME's ``run/`` folder is full, the store is not: the driver cannot write its pid
  file; the sweep ends FAILED with "No space left on device" as its error.
- the store's disk fills while trials run: the driver's writes fail; it exits 1 with one
  line saying so, and leaves no pid file and no temporary file.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import run_spx, spx_exe, wait_for

from spx.platform.store import Store

pytestmark = pytest.mark.e2e

SWEEP = """
name: full
task: digits-mlp
method: grid
fixed: {{train.steps: {steps}, train.report_every: 1, model.width: 16}}
parameters:
  prune.method: {{values: [none, magnitude]}}
resources: {{concurrent: 1}}
"""


@pytest.fixture
def mount_full():
    """mount_full(folder, size): a tmpfs of ``size`` at ``folder``, then filled up."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str, fill: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
        mounted.append(folder)
        if fill:
            fill_up(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_up(folder: Path) -> None:
    """Write zeros into ``folder`` until its filesystem refuses (ENOSPC), to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def _leftovers(home: Path) -> list[Path]:
    """Temporary files spx may write (``*.part``, ``*.tmp-*``) and pid files."""
    found = [p for p in home.rglob("*") if ".part" in p.name or ".tmp" in p.name]
    return found + list((home / "run").glob("*.json"))


def test_a_full_run_folder_fails_the_sweep_with_the_reason(tmp_path, spx_home, mount_full):
    (tmp_path / "s.yaml").write_text(SWEEP.format(steps=10))
    mount_full(spx_home / "run", "64k")
    proc = run_spx("sweep", "launch", "s.yaml", "--plain", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and "No space left on device" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    with Store.open(f"sqlite:///{spx_home / 'spx.db'}") as store:
        sweep = store.get_sweep("full")
        assert sweep.status == "FAILED" and sweep.finished_at is not None
        assert "No space left on device" in (sweep.error or "")
    status = run_spx("sweep", "status", "full", "--json", cwd=tmp_path)
    assert "No space left on device" in status.stdout
    assert _leftovers(spx_home) == []


def test_a_store_whose_disk_fills_mid_sweep_leaves_no_pid_or_temporary_file(
    tmp_path, spx_home, mount_full
):
    (tmp_path / "s.yaml").write_text(SWEEP.format(steps=20000))
    disk = mount_full(tmp_path / "disk", "4m", fill=False)
    url = f"sqlite:///{disk / 'spx.db'}"
    env = {**os.environ, "SPX_HOME": str(spx_home), "SPX_STORE_URL": url}
    proc = subprocess.Popen(
        [spx_exe(), "sweep", "launch", "s.yaml", "--plain"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def reporting() -> bool:
            with Store.open(url) as store:
                trials = store.trials(store.get_sweep("full").id) if store.list_sweeps() else []
                return any(t.step for t in trials)

        wait_for(reporting, timeout=240, every=0.5)
        fill_up(disk)
        started = time.monotonic()
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    print(f"driver ended {time.monotonic() - started:.1f} s after the disk filled")
    assert proc.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and "disk is full" in errors[-1], err[-3000:]
    assert _leftovers(spx_home) == [] and _leftovers(disk) == []
