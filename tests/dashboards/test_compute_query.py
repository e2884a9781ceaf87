"""docs/store.md's compute queries, as printed there, on SQLite and PostgreSQL.

Two real digits-mlp trials (dense, and 50 % zeros from step 0) are recorded in a store the
way the driver records them (every report into ``metrics``, the final metrics on the
trial), then the documented queries must give the compute counted by hand:
C = 3 (backward twice the forward) x 2 FLOPs per multiply-add x multiply-adds per image x
images trained.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spx.dashboards.query import run_query
from spx.platform.store import Store, TrialStatus
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, train
from spx.workers.tasks import build_task

DOCS = Path(__file__).resolve().parents[2] / "docs" / "store.md"
STEPS, BATCH, WIDTH = 6, 8, 32
MACS = 64 * WIDTH + WIDTH * WIDTH + WIDTH * 10  # digits-mlp, depth 2, per image
DENSE_C = 3 * 2 * MACS * STEPS * BATCH  # 976 896
SPARSE_C = 3 * 2 * (MACS // 2) * STEPS * BATCH  # every layer at half its weights throughout
ONE_SHOT = {
    "prune.method": "magnitude",
    "prune.sparsity": 0.5,
    "prune.schedule.kind": "one-shot",
    "prune.schedule.start": 0.0,
    "prune.schedule.end": 0.0,
}


def documented_sql(lead: str) -> str:
    """The first ```sql block after the paragraph of docs/store.md that starts with ``lead``."""
    text = DOCS.read_text()
    start = text.index(f"\n{lead}")
    match = re.compile(r"```sql\n(.*?)```", re.S).search(text, start)
    assert match is not None, lead
    return match.group(1)


@pytest.fixture(scope="module")
def trials() -> list[tuple[dict, ListReporter, dict]]:
    out = []
    for flat in ({"prune.method": "none"}, ONE_SHOT):
        params = {"train.steps": STEPS, "train.batch_size": BATCH, "model.width": WIDTH, **flat}
        reporter = ListReporter()
        final = train(
            TrialConfig.from_flat("digits-mlp", {**params, "train.report_every": 4}),
            build_task("digits-mlp"),
            reporter,
        )
        out.append((params, reporter, final))
    return out


def _record(store: Store, trials: list[tuple[dict, ListReporter, dict]]) -> None:
    sweep = store.create_sweep(
        "code-scaling", task="digits-mlp", method="grid", spec_text="", spec_hash="0" * 64
    )
    for number, (params, reporter, final) in enumerate(trials):
        trial = store.add_trial(sweep.id, number, params)
        for step, metrics in reporter.rows:
            store.upsert_metrics(trial.id, [(step, k, float(v)) for k, v in metrics.items()])
        store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics=final, step=STEPS)


def test_the_trials_count_what_the_hand_count_says(trials):
    (_, _, dense), (_, _, sparse) = trials
    assert dense["compute/train_flops"] == DENSE_C
    assert sparse["compute/train_flops"] == SPARSE_C
    assert dense["model/flops_per_token"] == 2 * MACS  # a digits image is one token


def test_best_loss_per_compute_budget_query(store, store_url, trials):
    _record(store, trials)
    df = run_query(store_url, documented_sql("Best loss per compute budget per method"))
    (_, _, dense), (_, _, sparse) = trials
    assert df.to_dict("list") == {
        "prune_method": ["magnitude", "none"],
        "compute": [SPARSE_C, DENSE_C],
        "best_loss": [pytest.approx(sparse["val/loss"]), pytest.approx(dense["val/loss"])],
    }


def test_iso_flop_query_buckets_by_compute(store, store_url, trials):
    _record(store, trials)
    df = run_query(store_url, documented_sql("Iso-FLOP curves"))
    # log10 976 896 = 5.99 and log10 488 448 = 5.69, to the nearest quarter decade
    assert df["log10_budget"].tolist() == [5.75, 6.0]
    assert df["prune_method"].tolist() == ["magnitude", "none"]
    assert df["n_avg"].tolist() == [trials[1][2]["model/params_avg"], trials[0][2]["model/params"]]
