"""Masks: one boolean tensor per prunable weight, and what follows from them.

Prunable by default: the ``.weight`` of every Linear and Conv layer (transformers' Conv1D
too); embedding tables only
when asked (and never a weight tied to an embedding unless asked). Never biases or norms.
Masks are keyed by tensor, not by module: a weight several modules share (code-gpt's head
is tied to its token embedding) has one mask under its first name, so it is pruned once and
counted once.
(ALGORITHMS.md, cross-cutting notes.) A model may name weights it keeps dense whatever the
method in a ``dense_weights`` attribute (the CNN's stem conv, as §6 and §7 advise); they
are then not prunable and count as non-prunable parameters.

>>> import torch
>>> keep_top(torch.tensor([[0.1, -3.0], [2.0, 0.5]]).abs(), keep=2).int().tolist()
[[0, 1], [1, 0]]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_conv1d(module: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2's projections: a Linear whose weight is in x out),
    recognised without importing transformers; a pruner that skipped it would prune
    nothing in GPT-2 and still report success."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def prunable_weights(model: nn.Module, embeddings: bool = False) -> dict[str, nn.Parameter]:
    """Name -> weight of every prunable layer, in module order, one entry per tensor: a
    weight shared by several modules appears once, under the first module's name."""
    skip = {id(model.get_parameter(n)) for n in getattr(model, "dense_weights", ())}
    if not embeddings:
        skip |= {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    kinds = _PRUNABLE + ((nn.Embedding,) if embeddings else ())
    out: dict[str, nn.Parameter] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        linear = isinstance(module, kinds) or is_conv1d(module)
        if linear and weight is not None and id(weight) not in skip:
            out[f"{name}.weight" if name else "weight"] = weight
            skip.add(id(weight))  # an alias later in module order shares this mask
    return out


def mask_names(model: nn.Module, weights: dict[str, nn.Parameter]) -> dict[str, str]:
    """``<module>.weight`` -> the name of its mask in ``weights``, for every module whose
    weight has one (tied modules map to the same mask; matched by tensor identity).

    >>> tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> tied[1].weight = tied[0].weight
    >>> mask_names(tied, prunable_weights(tied))
    {'0.weight': '0.weight', '1.weight': '0.weight'}
    """
    owner = {id(w): name for name, w in weights.items()}
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor) and id(weight) in owner:
            out[f"{name}.weight" if name else "weight"] = owner[id(weight)]
    return out


def output_layer(model: nn.Module, weights: dict[str, nn.Parameter]) -> str | None:
    """The weight whose outputs are the model's outputs (its ``output_layer`` attribute,
    else the last prunable weight); structured pruning never removes its outputs."""
    return getattr(model, "output_layer", None) or next(reversed(weights), None)


def keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask keeping exactly ``keep`` entries with the largest scores."""
    flat = scores.detach().flatten()
    size = flat.numel()
    if keep >= size or keep <= 0:
        return torch.full_like(scores, keep > 0, dtype=torch.bool)
    if keep > size // 2:  # a small top-k is faster: drop the lowest instead
        mask = torch.ones(size, dtype=torch.bool, device=flat.device)
        mask[torch.topk(flat, size - keep, largest=False, sorted=False).indices] = False
    else:
        mask = torch.zeros(size, dtype=torch.bool, device=flat.device)
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask.view_as(scores)


class MaskSet:
    """The current masks of a model's prunable weights.

    A mask is replaced, never edited in place (``masks[name] = new``): what is derived from
    it (the 0/1 multiplier in the weight's dtype, its nonzero count) is cached against the
    mask object, so the per-step work is one same-dtype multiply per weight.
    """

    def __init__(self, weights: dict[str, nn.Parameter]):
        self.weights = weights
        self.masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        self._derived: dict[str, tuple[Tensor, Tensor, int]] = {}

    def _get(self, name: str) -> tuple[Tensor, Tensor, int]:
        mask = self.masks[name]
        cached = self._derived.get(name)
        if cached is None or cached[0] is not mask:
            cached = (mask, mask.to(self.weights[name].dtype), int(mask.sum()))
            self._derived[name] = cached
        return cached

    def multiplier(self, name: str) -> Tensor:
        """The mask as 0/1 in its weight's dtype."""
        return self._get(name)[1]

    def multipliers(self) -> dict[str, Tensor]:
        return {name: self.multiplier(name) for name in self.masks}

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (after each optimizer step)."""
        for name, weight in self.weights.items():
            weight.mul_(self.multiplier(name))

    def nnz(self) -> int:
        return sum(self._get(name)[2] for name in self.masks)

    def numel(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def sparsity(self) -> float:
        total = self.numel()
        return 1.0 - self.nnz() / total if total else 0.0

    def layer_nnz(self) -> dict[str, int]:
        return {name: self._get(name)[2] for name in self.masks}

    def density(self) -> dict[str, float]:
        return {n: float(m.float().mean()) for n, m in self.masks.items()}

    def table(self, step: int) -> dict[str, list]:
        """Per-layer density as columns (one row per layer), for a tracking artifact."""
        names = list(self.masks)
        nnz = self.layer_nnz()
        return {
            "step": [step] * len(names),
            "layer": names,
            "shape": ["x".join(map(str, self.masks[n].shape)) for n in names],
            "numel": [self.masks[n].numel() for n in names],
            "nnz": [nnz[n] for n in names],
            "density": [nnz[n] / self.masks[n].numel() for n in names],
        }

    def collapsed(self) -> int:
        """How many layers have no weights left."""
        return sum(1 for name in self.masks if self._get(name)[2] == 0)
