"""One-shot post-training pruning of a whole model: calibrate, prune block by block, and
return the masks, plus what identifies the calibration (it changes the results).

``method`` is ``magnitude``, ``wanda`` or ``sparsegpt`` (posttrain.py, sparsegpt.py), each
unstructured at ``sparsity`` or N:M; ``refine="dsnot"`` then refines each layer's mask on
the same statistics (dsnot.py). Layers go in order (calibration.py): block b is calibrated
on the outputs of the pruned blocks before it. Masks come back keyed like
:func:`~spx.workers.masks.prunable_weights` (``<module>.weight``), in each weight's own
layout (transformers' Conv1D stores in x out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from spx.workers.calibration import InputStats, linear_weight, prune_in_order
from spx.workers.dsnot import dsnot_refine
from spx.workers.masks import is_conv1d
from spx.workers.posttrain import magnitude_mask, wanda_mask
from spx.workers.sparsegpt import sparsegpt_prune

Method = Literal["magnitude", "wanda", "sparsegpt"]


@dataclass(frozen=True)
class Recipe:
    method: Method
    sparsity: float
    nm: tuple[int, int] | None = None
    refine: Literal["dsnot"] | None = None
    dsnot_cycles: int = 50
    dsnot_threshold: float = 0.1
    block: int = 128
    damp: float = 0.01
    mask: Literal["row", "block"] = "block"


@dataclass(frozen=True)
class Calibration:
    """What the masks were computed from: the hash of the calibration tokens, how many
    sequences of how many tokens."""

    digest: str
    samples: int
    seq_len: int


def calibration_identity(batches: Sequence[Tensor]) -> Calibration:
    digest = hashlib.sha256()
    for x in batches:
        digest.update(str(x.dtype).encode() + x.detach().cpu().contiguous().numpy().tobytes())
    samples = sum(int(x.shape[0]) for x in batches)
    return Calibration(digest.hexdigest()[:16], samples, int(batches[0].shape[-1]))


def _layer_mask(layer: nn.Module, stats: InputStats, recipe: Recipe) -> Tensor:
    """Prune one layer in place; its out x in keep-mask."""
    weight = linear_weight(layer)
    if recipe.method == "sparsegpt":
        keep = sparsegpt_prune(
            weight, stats.H, recipe.sparsity, recipe.nm, recipe.block, recipe.damp, recipe.mask
        )
    elif recipe.method == "wanda":
        keep = wanda_mask(weight, stats.sq_norm, recipe.sparsity, recipe.nm)
    else:
        keep = magnitude_mask(weight, recipe.sparsity, recipe.nm)
    if recipe.refine == "dsnot":
        keep = dsnot_refine(
            weight, keep, stats, recipe.dsnot_cycles, recipe.nm, recipe.dsnot_threshold
        )
    with torch.no_grad():
        weight.mul_(keep)
    return keep


@torch.no_grad()
def prune_model(
    model: nn.Module,
    batches: Sequence[Tensor],
    recipe: Recipe,
    wanted: set[str] | None = None,
) -> dict[str, Tensor]:
    """Prune ``model`` in place; the masks of its pruned weights. ``wanted`` (weight
    names, e.g. the task's prunable weights) limits which layers are touched."""
    masks: dict[str, Tensor] = {}
    owner = {id(m): name for name, m in model.named_modules()}

    def prune(layers: dict[str, nn.Module], stats: dict[str, InputStats]) -> None:
        for name, layer in layers.items():
            key = f"{owner[id(layer)]}.weight"
            if wanted is not None and key not in wanted:
                continue
            keep = _layer_mask(layer, stats[name], recipe)
            masks[key] = keep.t().contiguous() if is_conv1d(layer) else keep

    prune_in_order(model, batches, prune, hessian=recipe.method == "sparsegpt")
    if not masks:
        raise ValueError("no prunable linear layer in the model's blocks")
    return masks
