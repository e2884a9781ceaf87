"""Calibration for post-training pruning: which layers are linear, what their inputs look
like, and pruning a trained model block by block in order.

Post-training methods (Wanda, Sun et al. 2023; SparseGPT, Frantar & Alistarh 2023; DSnoT,
Zhang et al. 2023) score a linear layer's weights with statistics of its inputs on a few
calibration batches. They prune **sequentially**: block b is scored on the outputs of
blocks < b *after* those were pruned. :func:`prune_in_order` does this without knowing how
a model calls its blocks (a Hugging Face decoder layer takes rotary embeddings and masks
from its parent): for each block it runs the whole model on the calibration batches with
hooks on that block's linear layers and stops the forward pass at the block's end, then
prunes the block. That costs b + 1 block passes for block b instead of one with cached
inputs, and needs no per-architecture code.

Linear layers are ``nn.Linear`` and transformers' ``Conv1D`` (GPT-2's projections, whose
weight is stored in x out, the transpose of ``nn.Linear``); :func:`linear_weight` gives
every one as an out x in view, so a method is written once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from spx.workers.masks import is_conv1d


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_weight(module: nn.Module) -> Tensor:
    """The layer's weight as an out x in view (edits through it edit the layer)."""
    weight: Tensor = module.weight  # type: ignore[assignment]
    return weight.t() if is_conv1d(module) else weight


def linear_layers(module: nn.Module, prefix: str = "") -> dict[str, nn.Module]:
    """Every linear layer under ``module``, by its full name."""
    lead = f"{prefix}." if prefix else ""
    return {f"{lead}{name}": m for name, m in module.named_modules() if is_linear(m)}


def blocks_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """What is calibrated together, in order: the model's repeated blocks (the longest
    ``nn.ModuleList`` holding linear layers: ``blocks`` in code-gpt, ``model.layers`` in
    LLaMA, ``transformer.h`` in GPT-2), or, in a model without one (an MLP), each linear
    layer on its own."""
    best: tuple[str, list[nn.Module]] = ("", [])
    for name, m in model.named_modules():
        longer = isinstance(m, nn.ModuleList) and len(m) > len(best[1])
        if longer and any(linear_layers(child) for child in m):
            best = (name, list(m))
    prefix, blocks = best
    if blocks:
        return [(f"{prefix}.{i}" if prefix else str(i), b) for i, b in enumerate(blocks)]
    return list(linear_layers(model).items())


@dataclass
class InputStats:
    """Running statistics of one linear layer's inputs over the calibration tokens: the
    per-feature sum and sum of squares, and (for SparseGPT) ``H = 2/N · XᵀX``."""

    features: int
    hessian: bool = False
    tokens: int = 0
    total: Tensor = field(init=False)
    squares: Tensor = field(init=False)
    gram: Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.total = torch.zeros(self.features, dtype=torch.float64)
        self.squares = torch.zeros(self.features, dtype=torch.float64)
        if self.hessian:
            self.gram = torch.zeros(self.features, self.features, dtype=torch.float64)

    def add(self, x: Tensor) -> None:
        rows = x.detach().reshape(-1, self.features).to("cpu", torch.float64)
        self.tokens += rows.shape[0]
        self.total += rows.sum(0)
        self.squares += (rows * rows).sum(0)
        if self.gram is not None:
            self.gram += rows.T @ rows

    @property
    def sq_norm(self) -> Tensor:
        """‖X_j‖² over all calibration tokens (Wanda's feature norm, squared)."""
        return self.squares

    @property
    def mean(self) -> Tensor:
        return self.total / max(self.tokens, 1)

    @property
    def var(self) -> Tensor:
        return (self.squares / max(self.tokens, 1) - self.mean**2).clamp_min(0.0)

    @property
    def H(self) -> Tensor:
        if self.gram is None:
            raise ValueError("these statistics were gathered without the Hessian")
        return 2.0 * self.gram / max(self.tokens, 1)


class _BlockDone(Exception):
    """Raised by a hook at the end of the block being calibrated: nothing after it runs."""


def collect(
    layers: dict[str, nn.Module],
    run: Callable[[], None],
    hessian: bool,
    stop_after: nn.Module | None = None,
) -> dict[str, InputStats]:
    """Input statistics of ``layers`` while ``run`` feeds the calibration batches."""
    stats = {
        name: InputStats(linear_weight(m).shape[1], hessian=hessian) for name, m in layers.items()
    }
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, s=stats[name]: s.add(args[0]))
        for name, m in layers.items()
    ]
    if stop_after is not None:

        def stop(*_: object) -> None:
            raise _BlockDone

        hooks.append(stop_after.register_forward_hook(stop))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return stats


def feeder(model: nn.Module, batches: Iterable[Tensor]) -> Callable[[], None]:
    """A ``run`` for :func:`collect`: the model on each calibration batch, each stopped
    wherever a hook says the block being calibrated is done."""
    inputs = list(batches)

    def run() -> None:
        for x in inputs:
            with contextlib.suppress(_BlockDone):
                model(x)

    return run


PruneLayers = Callable[[dict[str, nn.Module], dict[str, InputStats]], None]


def prune_in_order(
    model: nn.Module,
    batches: Iterable[Tensor],
    prune: PruneLayers,
    hessian: bool = False,
    extra: dict[str, nn.Module] | None = None,
) -> list[str]:
    """Prune ``model``'s blocks one after another, each scored on the outputs of the
    already pruned blocks before it, then the ``extra`` layers outside the blocks (the
    head, when asked) on the fully pruned trunk. ``prune(layers, stats)`` edits the layers
    in place. Returns the names of the layers pruned; raises when there are none."""
    run = feeder(model, batches)
    done: list[str] = []
    model.eval()
    for prefix, block in blocks_of(model):
        layers = {prefix: block} if is_linear(block) else linear_layers(block, prefix)
        if not layers:
            continue
        prune(layers, collect(layers, run, hessian, stop_after=block))
        done += layers
    if extra:
        prune(extra, collect(extra, run, hessian))
        done += extra
    if not done:
        raise ValueError(f"no linear layer to prune in {type(model).__name__}")
    return done
