"""`spx sweep validate` and `launch --dry-run`: what they check and what they show."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import run_spx

from spx.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"


def _spx(monkeypatch, capsys, tmp_path, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("SPX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(sys, "argv", ["spx", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_validate_refuses_more_workers_than_this_machine_has(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "big.yaml"
    sweep.write_text("name: big\ntask: digits-mlp\nresources: {workers_per_trial: 1000}\n")
    code, _, err = _spx(monkeypatch, capsys, tmp_path, "sweep", "validate", str(sweep))
    assert code == 2
    assert "resources.workers_per_trial: this machine cannot place 1000 workers" in err
    assert f"it has {os.cpu_count()} CPUs" in err
    assert not (tmp_path / "home").exists()


def test_validate_says_which_cluster_it_checked(tmp_path, monkeypatch, capsys):
    quickstart = str(EXAMPLES / "quickstart.yaml")
    code, out, _ = _spx(monkeypatch, capsys, tmp_path, "sweep", "validate", quickstart)
    assert code == 0
    assert f"capacity: a trial fits on this machine ({os.cpu_count()} CPUs" in out


def test_dry_run_shows_the_name_given_with_name(tmp_path, monkeypatch, capsys):
    quickstart = str(EXAMPLES / "quickstart.yaml")
    args = ("sweep", "launch", quickstart, "--dry-run", "--name", "renamed-h8")
    code, out, _ = _spx(monkeypatch, capsys, tmp_path, *args)
    assert code == 0
    assert out.startswith("ok: renamed-h8: 6 trials")
    assert "quickstart" not in out
    assert not (tmp_path / "home").exists()


def test_a_10000_character_name_is_echoed_cut(tmp_path, monkeypatch, capsys):
    quickstart = str(EXAMPLES / "quickstart.yaml")
    args = ("sweep", "validate", quickstart, "--name", "q" * 10_000)
    code, _, err = _spx(monkeypatch, capsys, tmp_path, *args)
    assert code == 2
    assert "name: String should have at most 200 characters" in err
    assert len(err) < 300


# A one-CPU Ray instance that lives until its stdin closes; prints its address.
HEAD_NODE = textwrap.dedent(
    """
    import sys
    import ray
    from spx.platform import cluster
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1")
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.readline()
    cluster.shutdown()
    """
)


@pytest.mark.e2e
def test_validate_with_address_checks_that_cluster(tmp_path):
    # A private instance: no token (a second driver would need the head's).
    env = {"SPX_HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD_NODE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert head.stdout is not None
        address = head.stdout.readline().strip()
        sweep = tmp_path / "four.yaml"
        sweep.write_text("name: four\ntask: digits-mlp\nresources: {workers_per_trial: 4}\n")
        proc = run_spx("sweep", "validate", str(sweep), "--address", address, cwd=tmp_path, env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"the Ray cluster at {address} cannot place 4 workers" in proc.stderr
        assert "(it has 1 CPUs and 0 GPUs)" in proc.stderr
    finally:
        assert head.stdin is not None
        head.stdin.close()
        head.wait(timeout=120)
