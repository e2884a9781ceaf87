"""What the installed `spx` writes where a user points it, and the files it derives from a
sweep's name: `sweep export -o`, `report -o`, `export-model -o`, driver logs and journals
under old names, and a load of a model folder that carries its own code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_spx

from spx.platform.store import Store, TrialStatus

pytestmark = pytest.mark.e2e

# (command before -o, what a good output file starts with)
COMMANDS = {
    "export": (["sweep", "export", "demo"], "number,"),
    "report": (["report", "demo"], "<!DOCTYPE html>"),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A store with a 3-trial sweep ``demo`` and a 1-trial sweep ``a;b``."""
    home = tmp_path_factory.mktemp("outputs") / "home"
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        for name, n in (("demo", 3), ("a;b", 1)):
            sweep = store.create_sweep(name, task="t", method="grid", spec_text="", spec_hash="0")
            for i in range(n):
                trial = store.add_trial(sweep.id, i, {"prune.sparsity": i / 4})
                metrics = {"val/loss": 1.0 - i / 10, "val/acc": 0.5 + i / 10}
                store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=metrics)
    return home


@pytest.fixture
def cwd(home, tmp_path):
    return tmp_path


def spx(home: Path, cwd: Path, *args: str):
    return run_spx(*args, cwd=cwd, env={"SPX_HOME": str(home), "SPX_STORE_URL": ""})


def _bad_input(proc, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_symlink_planted_beside_the_output_is_left_alone(home, cwd, command):
    args, head = COMMANDS[command]
    victim = cwd / "victim.txt"
    victim.write_text("keep me")
    (cwd / "out.part").symlink_to(victim)  # the old temporary name: out + .part
    (cwd / "out.csv.part").symlink_to(victim)
    (cwd / "out.html.part").symlink_to(victim)
    out = cwd / ("out.csv" if command == "export" else "out.html")
    proc = spx(home, cwd, *args, "-o", out.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert victim.read_text() == "keep me"
    assert out.read_text().startswith(head)
    assert sorted(p.name for p in cwd.iterdir()) == sorted(
        ["victim.txt", "out.part", "out.csv.part", "out.html.part", out.name]
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_an_existing_output_is_replaced_only_with_force(home, cwd, command):
    args, head = COMMANDS[command]
    out = cwd / "mine.txt"
    out.write_text("my notes")
    fmt = ["--format", "csv"] if command == "export" else []
    refused = spx(home, cwd, *args, "-o", "mine.txt", *fmt)
    _bad_input(refused, "--output", "mine.txt", "--force")
    assert out.read_text() == "my notes"
    forced = spx(home, cwd, *args, "-o", "mine.txt", *fmt, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert out.read_text().startswith(head)
    assert sorted(p.name for p in cwd.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["folder", "missing parent"])
def test_a_bad_output_path_is_bad_input_and_leaves_nothing(home, cwd, command, where):
    args, _ = COMMANDS[command]
    (cwd / "sub").mkdir()
    target = "sub" if where == "folder" else "nope/out.csv"
    proc = spx(home, cwd, *args, "-o", target, "--force")
    _bad_input(proc, "--output", target)
    assert sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*")) == ["sub"]


def test_export_model_refuses_a_file_and_an_earlier_export(home, cwd):
    (cwd / "file").write_text("x")
    _bad_input(
        spx(home, cwd, "sweep", "export-model", "demo", "--trial", "0", "-o", "file"), "--output"
    )
    (cwd / "model").mkdir()
    (cwd / "model" / "spx-model.json").write_text("{}")
    proc = spx(home, cwd, "sweep", "export-model", "demo", "--trial", "0", "-o", "model")
    _bad_input(proc, "--output", "--force")
    assert (cwd / "model" / "spx-model.json").read_text() == "{}"


def test_logs_of_a_sweep_started_by_an_earlier_version_are_found(home, cwd):
    """Before file names had a hash, ``a;b`` wrote logs/a_b.log and checkpoints/<id>-a_b/."""
    with Store.open(f"sqlite:///{home / 'spx.db'}") as store:
        sweep_id = store.get_sweep("a;b").id
    (home / "logs").mkdir(exist_ok=True)
    (home / "logs" / "a_b.log").write_text("the old driver's output\n")
    trial = home / "checkpoints" / f"{sweep_id}-a_b" / "trial-00000"
    trial.mkdir(parents=True)
    journal = {"step": 40, "metrics": {"val/loss": 0.25}}
    (trial / "reports.jsonl").write_text(json.dumps(journal) + "\n")

    driver_log = spx(home, cwd, "sweep", "logs", "a;b")
    assert driver_log.returncode == 0, driver_log.stderr
    assert "the old driver's output" in driver_log.stdout
    trial_log = spx(home, cwd, "sweep", "logs", "a;b", "0")
    assert trial_log.returncode == 0, trial_log.stderr
    assert "step     40" in trial_log.stdout and "val/loss=0.25" in trial_log.stdout


EMOJI_SWEEP = """name: "{name}"
task: digits-mlp
method: grid
fixed: {{train.steps: 20, train.report_every: 10, model.width: 16, prune.method: magnitude}}
parameters:
  prune.sparsity: {{values: [0.5]}}
resources: {{concurrent: 1}}
"""


def test_a_200_emoji_sweep_gets_its_files_and_its_mlflow_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    from spx.platform.paths import file_name

    name = "\U0001f600" * 200
    (tmp_path / "sweep.yaml").write_text(EMOJI_SWEEP.format(name=name), encoding="utf-8")
    home = tmp_path / "home"
    proc = run_spx(
        "sweep",
        "launch",
        "sweep.yaml",
        "--plain",
        cwd=tmp_path,
        env={"SPX_HOME": str(home), "SPX_STORE_URL": "", "MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MLflow" not in proc.stderr  # no MLflow call failed
    safe = file_name(name)
    report = home / "reports" / f"{safe}.html"
    assert f"report: {report}" in proc.stdout and report.read_text().startswith("<!DOCTYPE")
    assert (home / "checkpoints" / f"1-{safe}" / "trial-00000" / "reports.jsonl").is_file()

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    assert experiment.artifact_location == (home / "mlartifacts" / safe).as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent = runs[name]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "report"} <= logged
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs.values())
