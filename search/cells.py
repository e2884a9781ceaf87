"""The DARTS / DASS search space for the 8x8 digits (DASS: Mousavi et al., arXiv 2207.06968;
DARTS: Liu et al., ICLR 2019): sparse layers,
candidate ops, cells, the supernet, genotypes and the derived network.

Both networks share one skeleton: a dense 3x3 stem conv, ``cells`` normal cells (each a
DAG over two inputs, the previous two cells' outputs, and ``nodes`` intermediate nodes
whose concatenation is the cell's output), global average pooling and a linear
classifier. Every cell keeps the 8x8 resolution: there is no reduction cell (the spec's
DARTS has them; at 8x8 one halving already leaves 4x4 maps, and two stacked cells of
3x3/5x5 convs see the whole digit anyway).

In the :class:`Supernet` every edge is a :class:`MixedOp` over the candidate ops, weighted
by ``softmax(alpha)`` (one alpha row per edge, shared by all cells, as in DARTS). Its
convs and classifier are :class:`SparseConv` / :class:`SparseLinear`: with masks on (DASS)
each computes with ``W ⊙ M``, M the top-(1 - s) of its scores, so the architecture
gradient sees the network as it will be after pruning; with masks off it is plain DARTS.
All of them are masked, not only the ``sparse-conv-k`` ops, because the derived network is
pruned whole at retrain; ``sparse-conv-k`` names the op family DASS adds: a full
(not separable) k x k conv, meant to be pruned. The stem stays dense, as it does at
retrain (``dense_weights``).

The :class:`DerivedNet` built from a :class:`Genotype` has the same skeleton with two
plain ops per node and plain ``nn.Conv2d`` / ``nn.Linear`` layers, so the training loop's
pruners prune it like any model.

>>> import torch
>>> net = Supernet(("skip", "sparse-conv-3"), cells=1, nodes=2, channels=4, sparsity=0.9)
>>> genotype = derive(net.alpha.detach(), net.ops, nodes=2)
>>> DerivedNet(genotype, cells=1, channels=4)(torch.zeros(5, 64)).shape
torch.Size([5, 10])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from spx.workers.masks import keep_top

Score = Literal["magnitude", "learned"]
ConvFactory = Callable[..., nn.Module]
"""``conv(inputs, outputs, kernel, padding=0, dilation=1, groups=1)`` -> a conv layer."""


# -- sparse layers ------------------------------------------------------------------------


class _TopMask(torch.autograd.Function):
    """The 0/1 top-``keep`` mask of ``scores``; backward passes the gradient straight
    through to the scores (HYDRA), so pruned positions can earn their way back."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, keep: int) -> Tensor:
        return keep_top(scores, keep).to(scores.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _Sparse(nn.Module):
    """Mixin of SparseConv / SparseLinear: the weight used is ``W ⊙ M`` while ``masked``.

    ``magnitude`` scores are |W|, the mask is a constant of the step, so only kept weights
    get gradient. ``learned`` scores S (initialised to |W|) pick M by |S| and receive
    ``∂L/∂M · sign(S) = ∂L/∂(W ⊙ M) ⊙ W · sign(S)`` through the straight-through mask.
    """

    weight: Tensor
    scores: nn.Parameter | None

    def _sparse_init(self, sparsity: float, score: Score) -> None:
        self.sparsity = sparsity
        self.masked = True
        learned = score == "learned"
        self.scores = nn.Parameter(self.weight.detach().abs().clone()) if learned else None

    def keep(self) -> int:
        """Weights kept at ``sparsity``, rounded as the training loop rounds a layer."""
        size = self.weight.numel()
        return size - round(self.sparsity * size)

    def mask(self) -> Tensor:
        if self.scores is None:
            return keep_top(self.weight.detach().abs(), self.keep()).to(self.weight.dtype)
        return _TopMask.apply(self.scores.abs(), self.keep())

    def sparse_weight(self) -> Tensor:
        return self.weight * self.mask() if self.masked else self.weight


class SparseConv(_Sparse, nn.Conv2d):
    """A Conv2d that computes with ``W ⊙ M`` (DASS's sparse convolution).

    >>> conv = SparseConv(2, 2, 3, sparsity=0.75)
    >>> int((conv.sparse_weight() != 0).sum()), conv.weight.numel()
    (9, 36)
    """

    def __init__(
        self,
        inputs: int,
        outputs: int,
        kernel: int,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        *,
        sparsity: float,
        score: Score = "magnitude",
    ):
        nn.Conv2d.__init__(self, inputs, outputs, kernel, 1, padding, dilation, groups, bias=False)
        self._sparse_init(sparsity, score)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.sparse_weight(), self.bias)


class SparseLinear(_Sparse, nn.Linear):
    """A Linear layer that computes with ``W ⊙ M`` (the DASS classifier)."""

    def __init__(self, inputs: int, outputs: int, *, sparsity: float, score: Score = "magnitude"):
        nn.Linear.__init__(self, inputs, outputs)
        self._sparse_init(sparsity, score)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sparse_weight(), self.bias)


def set_masked(model: nn.Module, on: bool) -> None:
    """Switch the masks of every sparse layer in ``model`` on (DASS) or off (DARTS)."""
    for module in model.modules():
        if isinstance(module, _Sparse):
            module.masked = on


# -- candidate ops ------------------------------------------------------------------------


class Zero(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0)


def _conv_bn(c: int, conv: ConvFactory, affine: bool, *layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), *layers, nn.BatchNorm2d(c, affine=affine))


def _sep_conv(c: int, conv: ConvFactory, affine: bool) -> nn.Module:
    half = partial(_conv_bn, c, conv, affine)  # DARTS applies the depthwise-pointwise twice
    return nn.Sequential(
        half(conv(c, c, 3, padding=1, groups=c), conv(c, c, 1)),
        half(conv(c, c, 3, padding=1, groups=c), conv(c, c, 1)),
    )


def _dil_conv(c: int, conv: ConvFactory, affine: bool) -> nn.Module:
    return _conv_bn(c, conv, affine, conv(c, c, 3, padding=2, dilation=2, groups=c), conv(c, c, 1))


def _full_conv(kernel: int) -> Callable[[int, ConvFactory, bool], nn.Module]:
    def build(c: int, conv: ConvFactory, affine: bool) -> nn.Module:
        return _conv_bn(c, conv, affine, conv(c, c, kernel, padding=kernel // 2))

    return build


OPS: dict[str, Callable[[int, ConvFactory, bool], nn.Module]] = {
    "none": lambda c, conv, affine: Zero(),
    "skip": lambda c, conv, affine: nn.Identity(),
    "max-pool": lambda c, conv, affine: nn.MaxPool2d(3, 1, 1),
    "avg-pool": lambda c, conv, affine: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    "sep-conv-3": _sep_conv,
    "dil-conv-3": _dil_conv,
    "sparse-conv-3": _full_conv(3),
    "sparse-conv-5": _full_conv(5),
}
"""Candidate op name -> builder(channels, conv factory, affine batch norm); all keep the
shape (stride 1). Names match ``workers.config.DARTS_OPS + SPARSE_OPS``."""


class MixedOp(nn.Module):
    """Σ_o softmax(α)_o · o(x) over the candidate ops of one edge."""

    def __init__(self, ops: Sequence[str], channels: int, conv: ConvFactory):
        super().__init__()
        self.names = tuple(ops)
        built = []
        for name in ops:
            op = OPS[name](channels, conv, False)
            if name.endswith("pool"):  # DARTS: pools get a BN in the search network
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            built.append(op)
        self.ops = nn.ModuleList(built)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        for name, op, w in zip(self.names, self.ops, weights, strict=True):
            if name != "none":  # contributes 0; its alpha still moves through the softmax
                out = out + w * op(x)
        return out


# -- cells and networks -------------------------------------------------------------------


def edges_of(nodes: int) -> list[tuple[int, int]]:
    """(node, input) of every edge of a cell, in alpha-row order; inputs 0 and 1 are the
    cell's inputs, ``2 + j`` is intermediate node j."""
    return [(node, source) for node in range(nodes) for source in range(node + 2)]


class Cell(nn.Module):
    """A normal cell: two preprocessed inputs, ``nodes`` nodes, output = their concat.

    ``edges`` lists (node, input, module) in node order; a supernet's modules are
    MixedOps called with their alpha row, a derived cell's are plain ops.
    """

    def __init__(
        self,
        inputs: tuple[int, int],
        channels: int,
        nodes: int,
        edges: list[tuple[int, int, nn.Module]],
        conv: ConvFactory,
        affine: bool,
    ):
        super().__init__()
        self.pre0 = _conv_bn(channels, conv, affine, conv(inputs[0], channels, 1))
        self.pre1 = _conv_bn(channels, conv, affine, conv(inputs[1], channels, 1))
        self.nodes = nodes
        self.targets = [node for node, _, _ in edges]
        self.sources = [source for _, source, _ in edges]
        self.edges = nn.ModuleList([module for _, _, module in edges])

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor | None = None) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(self.nodes):
            total: Tensor | None = None
            for e, edge in enumerate(self.edges):
                if self.targets[e] != node:
                    continue
                x = states[self.sources[e]]
                y = edge(x) if weights is None else edge(x, weights[e])
                total = y if total is None else total + y
            assert total is not None, f"node {node} has no input"
            states.append(total)
        return torch.cat(states[2:], dim=1)


class _Skeleton(nn.Module):
    """Stem, cells, pooling, classifier: what the supernet and the derived net share."""

    dense_weights = ("stem.weight",)
    output_layer = "classifier.weight"

    def _build(
        self,
        cells: int,
        nodes: int,
        channels: int,
        make_edges: Callable[[], list[tuple[int, int, nn.Module]]],
        conv: ConvFactory,
        affine: bool,
    ) -> int:
        self.side = 8
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        widths = [channels, channels]  # the two inputs of the next cell
        built = []
        for _ in range(cells):
            built.append(Cell((widths[0], widths[1]), channels, nodes, make_edges(), conv, affine))
            widths = [widths[1], nodes * channels]
        self.cells = nn.ModuleList(built)
        return widths[1]

    def _features(self, x: Tensor, weights: Tensor | None) -> Tensor:
        x = x.view(-1, 1, self.side, self.side)
        # channels-last: CPU convs and pools on these tiny maps run about a fifth faster
        s0 = s1 = self.stem_bn(self.stem(x)).contiguous(memory_format=torch.channels_last)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights)
        return s1.mean(dim=(2, 3))


class Supernet(_Skeleton):
    """The DARTS supernet over ``ops`` for 8x8 digits, with sparse layers at ``sparsity``.

    ``alpha`` (edges x ops) is the architecture; every other parameter is a weight (or a
    learned score). Masks start on; :func:`set_masked` switches them.
    """

    def __init__(
        self,
        ops: Sequence[str],
        cells: int,
        nodes: int,
        channels: int,
        sparsity: float,
        score: Score = "magnitude",
        classes: int = 10,
    ):
        super().__init__()
        self.ops = tuple(ops)
        conv = partial(SparseConv, sparsity=sparsity, score=score)

        def mixed_edges() -> list[tuple[int, int, nn.Module]]:
            return [(n, s, MixedOp(ops, channels, conv)) for n, s in edges_of(nodes)]

        width = self._build(cells, nodes, channels, mixed_edges, conv, affine=False)
        self.classifier = SparseLinear(width, classes, sparsity=sparsity, score=score)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(edges_of(nodes)), len(ops)))

    def weights(self) -> list[nn.Parameter]:
        """Everything the weight optimizer trains: all but alpha."""
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self._features(x, F.softmax(self.alpha, dim=-1)))


@dataclass(frozen=True)
class Genotype:
    """A derived normal cell: for each intermediate node, its two (op, input) edges.

    >>> g = Genotype(((("skip", 0), ("sparse-conv-3", 1)),))
    >>> Genotype.from_json(g.to_json()) == g, g.to_json()
    (True, {'normal': [[['skip', 0], ['sparse-conv-3', 1]]]})
    """

    normal: tuple[tuple[tuple[str, int], ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"normal": [[[op, source] for op, source in node] for node in self.normal]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Genotype:
        return cls(tuple(tuple((str(op), int(src)) for op, src in node) for node in data["normal"]))

    def table(self) -> dict[str, list]:
        """One row per chosen edge: node, input, op (a tracking artifact)."""
        rows = [(n, src, op) for n, node in enumerate(self.normal) for op, src in node]
        return {
            "node": [r[0] for r in rows],
            "input": [r[1] for r in rows],
            "op": [r[2] for r in rows],
        }


def derive(alpha: Tensor, ops: Sequence[str], nodes: int, per_node: int = 2) -> Genotype:
    """Standard DARTS derivation: per node, the ``per_node`` incoming edges with the
    largest non-``none`` softmax weight, each with its best non-``none`` op.

    >>> alpha = torch.tensor([[0.0, 1.0], [2.0, 0.5], [0.0, 3.0], [0.0, 0.0], [0.0, 2.0]])
    >>> derive(alpha, ("none", "skip"), nodes=2).normal
    ((('skip', 0), ('skip', 1)), (('skip', 0), ('skip', 2)))
    """
    real = [i for i, op in enumerate(ops) if op != "none"]
    if not real:
        raise ValueError(f"no op but 'none' to derive from (got ops={tuple(ops)})")
    weights = F.softmax(alpha.detach().float(), dim=-1)[:, real]
    best, which = weights.max(dim=-1)
    chosen: list[tuple[tuple[str, int], ...]] = []
    for node in range(nodes):
        rows = [(e, src) for e, (n, src) in enumerate(edges_of(nodes)) if n == node]
        rows.sort(key=lambda r: (-float(best[r[0]]), r[1]))  # ties: the earlier input
        top = sorted(rows[:per_node], key=lambda r: r[1])
        chosen.append(tuple((ops[real[int(which[e])]], src) for e, src in top))
    return Genotype(tuple(chosen))


class DerivedNet(_Skeleton):
    """The network a genotype describes, with plain convs (prunable by the loop's pruners).

    Same skeleton as the supernet (``cells`` normal cells of ``channels``, dense stem);
    affine batch norm, as DARTS's evaluation network has.
    """

    def __init__(self, genotype: Genotype, cells: int, channels: int, classes: int = 10):
        super().__init__()
        self.genotype = genotype
        conv = partial(nn.Conv2d, bias=False)
        nodes = len(genotype.normal)

        def plain_edges() -> list[tuple[int, int, nn.Module]]:
            return [
                (n, src, OPS[op](channels, conv, True))
                for n, node in enumerate(genotype.normal)
                for op, src in node
            ]

        width = self._build(cells, nodes, channels, plain_edges, conv, affine=True)
        self.classifier = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self._features(x, None))
