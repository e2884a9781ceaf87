"""Every ```sql block of docs/store.md, as printed there, on SQLite and PostgreSQL.

A store holds the finished sweeps the queries name. ``code-scaling``: two real digits-mlp
trials (dense, and 50 % zeros from step 0) recorded the way the driver records them (every
report into ``metrics``, the final metrics on the trial); its compute queries must give
the compute counted by hand: C = 3 (backward twice the forward) x 2 FLOPs per
multiply-add x multiply-adds per image x images trained. ``quickstart``, ``diloco`` and
``schedules`` are written directly, with values the other queries must return. The
block that sets up a read-only role is PostgreSQL's alone: it runs there, with this
server's names, and the role it makes must read the store and write nothing.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from spx.dashboards.query import run_query
from spx.platform.store import Store, SweepStatus, TrialStatus
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


SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)


def sql_blocks() -> list[tuple[str, str]]:
    """Every ```sql block of docs/store.md, with the paragraph just before it."""
    text = DOCS.read_text()
    return [
        (text[: m.start()].rstrip().split("\n\n")[-1].strip(), m.group(1))
        for m in SQL_BLOCK.finditer(text)
    ]


def documented_sql(lead: str) -> str:
    """The ```sql block after the paragraph of docs/store.md that starts with ``lead``."""
    found = [sql for before, sql in sql_blocks() if before.startswith(lead)]
    assert len(found) == 1, (lead, len(found))
    return found[0]


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
    store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, finished=True)


# (params, status, final val/loss, {metric: [value at steps 10, 20]}) per trial
SWEEPS = {
    "quickstart": [
        ({"prune.method": "magnitude", "prune.sparsity": 0.5}, "COMPLETED", 0.7,
         {"model/sparsity": [0.25, 0.5]}),
        ({"prune.method": "magnitude", "prune.sparsity": 0.9}, "COMPLETED", 0.9,
         {"model/sparsity": [0.45, 0.9]}),
    ],
    "diloco": [
        ({"comm.strategy": "ddp"}, "COMPLETED", 0.5,
         {"comm/bytes_sent": [4e5, 8e5], "val/loss": [0.8, 0.5]}),
        ({"comm.strategy": "diloco"}, "COMPLETED", 0.6,
         {"comm/bytes_sent": [1e4, 2e4], "val/loss": [0.9, 0.6]}),
    ],
    "schedules": [
        ({"prune.schedule.start": 0.0, "prune.schedule.end": 0.5, "prune.sparsity": 0.5,
          "train.seed": 0}, "COMPLETED", 0.6, {}),
        ({"prune.schedule.start": 0.0, "prune.schedule.end": 0.5, "prune.sparsity": 0.5,
          "train.seed": 1}, "COMPLETED", 0.8, {}),
        ({"prune.schedule.start": 0.25, "prune.schedule.end": 0.75, "prune.sparsity": 0.5,
          "train.seed": 0}, "COMPLETED", 0.5, {}),
        ({"prune.schedule.start": 0.25, "prune.schedule.end": 0.75, "prune.sparsity": 0.9,
          "train.seed": 0}, "COMPLETED", 0.9, {}),
        ({"prune.schedule.start": 0.25, "prune.schedule.end": 0.75, "prune.sparsity": 0.9,
          "train.seed": 1}, "FAILED", 9.0, {}),
    ],
}  # fmt: skip


def _record_written(store: Store) -> None:
    for name, rows in SWEEPS.items():
        sweep = store.create_sweep(name, task="t", method="grid", spec_text="", spec_hash="0")
        for number, (params, status, loss, history) in enumerate(rows):
            trial = store.add_trial(sweep.id, number, params)
            store.upsert_metrics(
                trial.id,
                [
                    (step, k, v)
                    for k, vs in history.items()
                    for step, v in zip((10, 20), vs, strict=True)
                ],
            )
            store.update_trial(trial.id, status=TrialStatus(status), metrics={"val/loss": loss})
        store.update_sweep(sweep.id, status=SweepStatus.COMPLETED, finished=True)


@pytest.fixture
def documented(store, store_url, trials) -> str:
    """The URL of a store holding every sweep docs/store.md's queries name, finished."""
    _record(store, trials)
    _record_written(store)
    return store_url


def _rows(df) -> list[tuple]:
    return [tuple(r) for r in df.itertuples(index=False)]


ROLE_LEAD = "The guards above are a second line"
QUERY_LEADS = (
    "Best loss per compute budget per method",
    "Iso-FLOP curves",
    "Realized sparsity schedules",
    "Loss against bytes sent, per communication strategy",
    "Schedules compared",
)


def test_every_sql_block_of_the_doc_is_run_here():
    leads = [before for before, _ in sql_blocks()]
    assert len(leads) == len(QUERY_LEADS) + 1
    assert all(any(b.startswith(lead) for lead in (*QUERY_LEADS, ROLE_LEAD)) for b in leads)


def test_the_trials_count_what_the_hand_count_says(trials):
    (_, _, dense), (_, _, sparse) = trials
    assert dense["compute/train_flops"] == DENSE_C
    assert sparse["compute/train_flops"] == SPARSE_C
    assert dense["model/flops_per_token"] == 2 * MACS  # a digits image is one token


def test_best_loss_per_compute_budget_query(documented, trials):
    df = run_query(documented, documented_sql("Best loss per compute budget per method"))
    (_, _, dense), (_, _, sparse) = trials
    assert df.to_dict("list") == {
        "prune_method": ["magnitude", "none"],
        "compute": [SPARSE_C, DENSE_C],
        "best_loss": [pytest.approx(sparse["val/loss"]), pytest.approx(dense["val/loss"])],
    }


def test_iso_flop_query_buckets_by_compute(documented, trials):
    df = run_query(documented, documented_sql("Iso-FLOP curves"))
    # log10 976 896 = 5.99 and log10 488 448 = 5.69, to the nearest quarter decade
    assert df["log10_budget"].tolist() == [5.75, 6.0]
    assert df["prune_method"].tolist() == ["magnitude", "none"]
    assert df["n_avg"].tolist() == [trials[1][2]["model/params_avg"], trials[0][2]["model/params"]]


def test_realized_sparsity_schedules_query(documented):
    df = run_query(documented, documented_sql("Realized sparsity schedules"))
    assert list(df.columns) == ["trial", "step", "sparsity"]
    assert _rows(df) == [(0, 10, 0.25), (0, 20, 0.5), (1, 10, 0.45), (1, 20, 0.9)]


def test_loss_against_bytes_sent_query(documented):
    df = run_query(documented, documented_sql("Loss against bytes sent, per communication"))
    assert list(df.columns) == ["trial", "comm_strategy", "step", "bytes_sent", "val_loss"]
    assert _rows(df) == [
        (0, "ddp", 10, 4e5, 0.8),
        (0, "ddp", 20, 8e5, 0.5),
        (1, "diloco", 10, 1e4, 0.9),
        (1, "diloco", 20, 2e4, 0.6),
    ]


def test_schedules_compared_query(documented):
    df = run_query(documented, documented_sql("Schedules compared"))
    assert list(df.columns) == ["prune_start", "prune_end", "prune_sparsity", "loss", "n"]
    # the failed trial is left out; within a sparsity, the best schedule first
    assert _rows(df) == [
        (0.25, 0.75, 0.5, 0.5, 1),
        (0.0, 0.5, 0.5, pytest.approx(0.7), 2),
        (0.25, 0.75, 0.9, 0.9, 1),
    ]


def _statements(block: str) -> list[str]:
    """The block's statements, each without its trailing ``;`` (comment-only parts dropped)."""
    parts = [part.strip() for part in block.split(";")]
    return [p for p in parts if re.sub(r"--[^\n]*", "", p).strip()]


@pytest.fixture
def reader(postgres_url, trials) -> str:
    """The URL of a role made by running docs/store.md's role block as printed, with this
    server's names in place of the doc's: the database, the store's schema, the owner."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        owner, superuser = conn.execute(
            sa.text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        ).one()
    if not superuser:
        admin.dispose()
        pytest.skip("creating a role needs the test server's superuser")
    with Store.open(postgres_url) as store:
        _record(store, trials)
    url = sa.make_url(postgres_url)
    schema = url.query["options"].split("=", 1)[1]
    role = f"spx_reader_{uuid.uuid4().hex[:8]}"
    names = {
        "spx_reader": role,
        "DATABASE spx": f"DATABASE {url.database}",
        "SCHEMA public": f'SCHEMA "{schema}"',
        "spx_owner": owner,
    }
    block = documented_sql(ROLE_LEAD)
    for doc, here in names.items():
        assert doc in block, doc
        block = block.replace(doc, here)
    try:
        with admin.connect() as conn:
            for statement in _statements(block):
                conn.execute(sa.text(statement))
        yield url.set(username=role, password="choose-one").render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


@pytest.mark.postgres
def test_the_documented_reader_role_reads_the_store_and_writes_nothing(
    reader, postgres_url, trials
):
    df = run_query(reader, documented_sql("Best loss per compute budget per method"))
    assert df["compute"].tolist() == [SPARSE_C, DENSE_C]
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:  # a table a later migration adds, made by the owner
        conn.execute(sa.text("CREATE TABLE later_table (a integer)"))
        conn.execute(sa.text("INSERT INTO later_table VALUES (7)"))
    admin.dispose()
    assert run_query(reader, "SELECT a FROM later_table")["a"].tolist() == [7]
    engine = sa.create_engine(reader)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="read-only"):
            conn.execute(sa.text("DELETE FROM metrics"))
    finally:
        engine.dispose()
