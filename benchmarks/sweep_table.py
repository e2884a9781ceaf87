"""Mean ± std over seeds of a finished sweep's final metrics, as a Markdown table.

    spx sweep show NAME --json | .venv/bin/python benchmarks/sweep_table.py KEY [KEY ...]

Trials are grouped by the given parameter keys (every other parameter but ``train.seed``
is expected to be fixed within a group); each row shows the seeds' mean ± sample std of
``val/acc`` and the achieved ``model/sparsity``, ``model/nnz``, ``model/params_avg`` and
``model/collapsed_layers``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

METRICS = ("val/acc", "model/sparsity", "model/nnz", "model/params_avg", "model/collapsed_layers")


def _spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    keys = sys.argv[1:]
    trials = json.load(sys.stdin)["trials"]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for trial in trials:
        if trial["status"] == "COMPLETED":
            groups[tuple(trial["params"][k] for k in keys)].append(trial["metrics"])
    print("| " + " | ".join(keys) + " | seeds | " + " | ".join(METRICS) + " |")
    print("|---" * (len(keys) + 1 + len(METRICS)) + "|")
    for group, rows in groups.items():
        cells = [_spread([r["val/acc"] for r in rows], 3)]
        cells.append(f"{statistics.fmean(r['model/sparsity'] for r in rows):.4f}")
        cells += [f"{statistics.fmean(r[m] for r in rows):.0f}" for m in METRICS[2:]]
        print(f"| {' | '.join(map(str, group))} | {len(rows)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
