"""DASS and DARTS inside one trial (Mousavi et al., arXiv 2207.06968; Liu et al., ICLR
2019): search a supernet, derive a cell,
retrain the derived network through the normal training loop at ``prune.sparsity``.

The search is first-order DARTS, alternating per step:

1. alpha: one Adam step (``nas.arch_lr``, betas (0.5, 0.999), ``nas.arch_weight_decay``)
   on a batch of the train split's ``holdout`` half;
2. weights (and learned scores): one SGD step on a batch of the ``search`` half, with
   DARTS's defaults rather than ``train.*`` (those are for the retrain): lr 0.025 cosine
   to 0.001 over ``nas.search_steps``, momentum 0.9, weight decay 3e-4, grad-norm clip 5.

``nas.method: dass`` keeps the sparse layers' masks on at ``prune.sparsity`` for both
steps, so the architecture gradient sees the pruned supernet; ``darts`` keeps them off
throughout (search dense, prune at retrain). Both then derive the top-2 edges per node
(:func:`~spx.search.cells.derive`) and retrain a :class:`~spx.search.cells.DerivedNet` of
the same ``nas.cells`` and ``nas.channels`` from scratch with ``train.*`` and
``prune.*`` (``prune.method: none`` retrains it dense). The learned scores and the
supernet's weights serve the search only.

Reports: ``search/*`` at steps 1..``nas.search_steps`` every ``train.report_every``, the
``genotype`` table at the last search step, then the loop's reports shifted by
``nas.search_steps``. ``genotype.json`` (genotype, alpha, search time, the config) goes
into the trial folder, the parent of ``checkpoint_dir``. A retried trial whose folder
holds a ``genotype.json`` of the same config skips the search and retrains (resuming from
the retrain checkpoint when there is one): the search is deterministic on CPU, so this is
what it would have found again.

>>> from spx.workers.config import TrialConfig
>>> try:
...     validate(TrialConfig.from_flat("digits-cnn", {"nas.method": "dass"}))
... except ConfigError as exc:
...     print(exc.field, exc.value)
prune.sparsity 0.0
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.errors import ConfigError, TrialError, TrialPruned
from spx.search.cells import (
    DerivedNet,
    Genotype,
    SparseConv,
    SparseLinear,
    Supernet,
    derive,
    edges_of,
    set_masked,
)
from spx.workers.config import SPARSE_OPS, TrialConfig
from spx.workers.loop import Reporter, train
from spx.workers.methods import method_class
from spx.workers.tasks import Batch, DigitsMLP, Part, Task, task_class

__all__ = [
    "DerivedNet",
    "DerivedTask",
    "Genotype",
    "SearchResult",
    "SparseConv",
    "SparseLinear",
    "Supernet",
    "build_supernet",
    "run",
    "search",
    "validate",
]

W_LR, W_LR_MIN = 0.025, 0.001
W_MOMENTUM, W_WEIGHT_DECAY, W_GRAD_CLIP = 0.9, 3e-4, 5.0
ARCH_BETAS = (0.5, 0.999)
GENOTYPE_FILE = "genotype.json"
_FIT_STREAM, _ARCH_STREAM = 0x6E6173, 0x617263  # data seeds apart from the loop's seed + 1


def validate(cfg: TrialConfig, task: Task | None = None) -> None:
    """Raise ConfigError for a dass/darts trial this pipeline cannot run (``task``: the
    pipelines' common signature; the supernet needs only ``cfg.task``)."""
    nas = cfg.nas
    if nas.method not in ("dass", "darts"):
        raise ConfigError("this pipeline runs dass or darts", field="nas.method", value=nas.method)
    if not issubclass(task_class(cfg.task), DigitsMLP):
        raise ConfigError(
            "the dass/darts supernet is built for the 8x8 digits; use digits-mlp or digits-cnn",
            field="task",
            value=cfg.task,
        )
    if all(op == "none" for op in nas.ops):
        raise ConfigError(
            "give an op other than 'none' to derive", field="nas.ops", value=list(nas.ops)
        )
    if nas.method == "dass" and not set(nas.ops) & set(SPARSE_OPS):
        raise ConfigError(
            f"dass needs a sparse op among nas.ops ({', '.join(SPARSE_OPS)})",
            field="nas.ops",
            value=list(nas.ops),
        )
    if nas.method == "dass" and cfg.prune.sparsity == 0:
        raise ConfigError(
            "dass searches with masks at prune.sparsity; set it above 0, or use nas.method darts",
            field="prune.sparsity",
            value=cfg.prune.sparsity,
        )
    _check_prunable(cfg)


def _check_prunable(cfg: TrialConfig) -> None:
    """Ask the sparsity method about every op the derived net could hold (e.g. nm needs
    M to divide each conv's inputs, which a depthwise conv has one of)."""
    nodes, method = cfg.nas.nodes, method_class(cfg.prune.method)
    for op in cfg.nas.ops:
        if op != "none":
            genotype = Genotype(tuple(((op, 0), (op, 1)) for _ in range(nodes)))
            with torch.device("meta"):
                model = DerivedNet(genotype, cfg.nas.cells, cfg.nas.channels)
            method.validate(cfg, model)


# -- search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    genotype: Genotype
    weights: Tensor
    """softmax(alpha): one row per edge (``edges_of(nodes)`` order), one column per op."""
    ops: tuple[str, ...]
    seconds: float
    steps: int

    def table(self) -> dict[str, list]:
        """The genotype as columns node, input, op, weight (the op's softmax weight)."""
        table = self.genotype.table()
        nodes = len(self.genotype.normal)
        row = {edge: i for i, edge in enumerate(edges_of(nodes))}
        table["weight"] = [
            round(float(self.weights[row[(n, src)], self.ops.index(op)]), 4)
            for n, src, op in zip(table["node"], table["input"], table["op"], strict=True)
        ]
        return table

    def to_json(self, cfg: TrialConfig) -> dict[str, Any]:
        return {
            **self.genotype.to_json(),
            "alpha": {
                "ops": list(self.ops),
                "edges": [list(e) for e in edges_of(len(self.genotype.normal))],
                "softmax": [[round(float(w), 6) for w in row] for row in self.weights],
            },
            "search_s": self.seconds,
            "search_steps": self.steps,
            "config": cfg.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchResult:
        alpha = data["alpha"]
        weights = torch.tensor(alpha["softmax"])
        ops = tuple(alpha["ops"])
        return cls(Genotype.from_json(data), weights, ops, data["search_s"], data["search_steps"])


def build_supernet(cfg: TrialConfig) -> Supernet:
    """The trial's supernet, seeded by ``train.seed``, masks on for dass and off for darts."""
    nas, dass = cfg.nas, cfg.nas.method == "dass"
    torch.manual_seed(cfg.train.seed)
    net = Supernet(
        nas.ops,
        nas.cells,
        nas.nodes,
        nas.channels,
        sparsity=cfg.prune.sparsity,
        score=nas.score if dass else "magnitude",  # darts never reads scores
    )
    set_masked(net, dass)
    return net


def search(cfg: TrialConfig, task: Task, reporter: Reporter) -> SearchResult:
    """Alternate alpha and weight steps for ``nas.search_steps``, then derive (module doc).

    Raises TrialPruned (at its search step) when the reporter asks the trial to stop.
    """
    steps, seed = cfg.nas.search_steps, cfg.train.seed
    net = build_supernet(cfg)
    w_opt = torch.optim.SGD(
        net.weights(), lr=W_LR, momentum=W_MOMENTUM, weight_decay=W_WEIGHT_DECAY
    )
    a_opt = torch.optim.Adam(
        [net.alpha], lr=cfg.nas.arch_lr, betas=ARCH_BETAS, weight_decay=cfg.nas.arch_weight_decay
    )
    fit = task.batches(cfg, torch.Generator().manual_seed(seed + _FIT_STREAM), "search")
    score = task.batches(cfg, torch.Generator().manual_seed(seed + _ARCH_STREAM), "holdout")
    started = window_start = time.perf_counter()
    window: list[tuple[float, float]] = []
    for step in range(1, steps + 1):
        arch_loss = arch_step(net, a_opt, task, next(score))
        lr = W_LR_MIN + 0.5 * (W_LR - W_LR_MIN) * (1 + math.cos(math.pi * (step - 1) / steps))
        window.append((weight_step(net, w_opt, task, next(fit), lr, step), arch_loss))
        if step % cfg.train.report_every == 0 or step == steps:
            elapsed = time.perf_counter() - window_start
            metrics = _search_metrics(net, task, cfg, window, elapsed, lr)
            if reporter.report(step, metrics) is False:
                metrics["nas/search_s"] = time.perf_counter() - started
                raise TrialPruned(step, metrics)
            window, window_start = [], time.perf_counter()
    weights = F.softmax(net.alpha.detach(), dim=-1)
    genotype = derive(net.alpha, net.ops, cfg.nas.nodes)
    return SearchResult(genotype, weights, net.ops, time.perf_counter() - started, steps)


def arch_step(net: Supernet, opt: torch.optim.Optimizer, task: Task, batch: Batch) -> float:
    """One first-order alpha step on a holdout batch, through the supernet as it is
    (masked for dass): only alpha's gradient is computed."""
    net.train()
    opt.zero_grad(set_to_none=True)
    loss = task.loss(net, batch)
    loss.backward(inputs=[net.alpha])
    opt.step()
    return float(loss.detach())


def weight_step(
    net: Supernet, opt: torch.optim.Optimizer, task: Task, batch: Batch, lr: float, step: int
) -> float:
    """One SGD step of the weights (and learned scores) on a search-half batch."""
    for group in opt.param_groups:
        group["lr"] = lr
    net.train()
    opt.zero_grad(set_to_none=True)
    loss = task.loss(net, batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise TrialError(f"search/train_loss is {value} at search step {step}")
    params = net.weights()
    loss.backward(inputs=params)
    nn.utils.clip_grad_norm_(params, W_GRAD_CLIP)
    opt.step()
    return value


def _search_metrics(
    net: Supernet,
    task: Task,
    cfg: TrialConfig,
    window: list[tuple[float, float]],
    elapsed: float,
    lr: float,
) -> dict[str, float]:
    net.eval()
    held = task.evaluate(net, cfg, "holdout")
    net.train()
    probs = F.softmax(net.alpha.detach(), dim=-1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
    return {
        "search/loss": held["val/loss"],  # the supernet on the whole holdout half
        "search/acc": held["val/acc"],
        "search/train_loss": sum(w for w, _ in window) / len(window),
        "search/arch_loss": sum(a for _, a in window) / len(window),
        "search/alpha_entropy": float(entropy),
        "search/lr": lr,
        "search/step_s": elapsed / len(window),
    }


# -- the pipeline -------------------------------------------------------------------------


class DerivedTask(Task):
    """``task`` with its model replaced by the derived network; data, loss and eval are
    the task's own (so the loop, ``validate`` and accounting work unchanged)."""

    name = "derived"

    def __init__(self, task: Task, genotype: Genotype):
        super().__init__(task.data_dir)
        self.inner, self.genotype = task, genotype

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        return DerivedNet(self.genotype, cfg.nas.cells, cfg.nas.channels)

    def batches(
        self, cfg: TrialConfig, generator: torch.Generator, part: Part = "train"
    ) -> Iterator[Batch]:
        return self.inner.batches(cfg, generator, part)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return self.inner.loss(model, batch)

    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        return self.inner.evaluate(model, cfg, part)

    def tokens_per_batch(self, cfg: TrialConfig) -> int:
        return self.inner.tokens_per_batch(cfg)

    def example_input(self, cfg: TrialConfig) -> Tensor:
        return self.inner.example_input(cfg)


class _Shifted:
    """Passes reports (and tables) on with their steps moved past the search."""

    def __init__(self, reporter: Reporter, by: int):
        self.reporter, self.by = reporter, by

    def report(self, step: int, metrics: dict[str, float]) -> bool | None:
        return self.reporter.report(step + self.by, metrics)

    def artifact(self, step: int, name: str, table: dict[str, list]) -> None:
        if "step" in table:
            table = {**table, "step": [s + self.by for s in table["step"]]}
        _publish(self.reporter, step + self.by, name, table)


def _publish(reporter: Reporter, step: int, name: str, table: dict[str, list]) -> None:
    artifact = getattr(reporter, "artifact", None)
    if artifact is not None:
        artifact(step, name, table)


def run(
    cfg: TrialConfig, task: Task, reporter: Reporter, checkpoint_dir: Path | None = None
) -> dict[str, float]:
    """Search (or reuse this trial's ``genotype.json``), then retrain the derived net
    through :func:`spx.workers.loop.train`; return the loop's final metrics plus
    ``nas/search_s`` and ``nas/search_steps``.

    >>> from spx.workers.loop import ListReporter
    >>> from spx.workers.tasks import build_task
    >>> cfg = TrialConfig.from_flat("digits-cnn", {"nas.method": "darts", "nas.cells": 1,
    ...     "nas.nodes": 2, "nas.channels": 4, "nas.search_steps": 2, "train.steps": 2})
    >>> final = run(cfg, build_task("digits-cnn"), ListReporter())
    >>> sorted(k for k in final if k.startswith(("nas/", "val/")))
    ['nas/search_s', 'nas/search_steps', 'val/acc', 'val/loss']
    """
    validate(cfg)
    folder = checkpoint_dir.parent if checkpoint_dir is not None else None
    result = _load(cfg, folder)
    if result is None:
        result = search(cfg, task, reporter)
        _publish(reporter, result.steps, "genotype", result.table())
        if folder is not None:
            _save(cfg, folder, result)
    extra = {"nas/search_s": result.seconds, "nas/search_steps": float(result.steps)}
    derived = DerivedTask(task, result.genotype)
    try:
        final = train(cfg, derived, _Shifted(reporter, result.steps), checkpoint_dir)
    except TrialPruned as stop:
        raise TrialPruned(stop.step + result.steps, {**stop.metrics, **extra}) from None
    return {**final, **extra}


def _load(cfg: TrialConfig, folder: Path | None) -> SearchResult | None:
    """An earlier attempt's search, if this trial folder holds one of the same config."""
    path = folder / GENOTYPE_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("config") != cfg.model_dump(mode="json"):
        return None
    return SearchResult.from_json(data)


def _save(cfg: TrialConfig, folder: Path, result: SearchResult) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{GENOTYPE_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(result.to_json(cfg), indent=1))
    os.replace(tmp, folder / GENOTYPE_FILE)  # a crash never leaves half a genotype
