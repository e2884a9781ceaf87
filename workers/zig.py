"""Zero-invariant groups (ZIGs) of a model, found by tracing its graph (ALGORITHMS.md §4a).

A :class:`Group` is one family of removable units (the output channels or neurons of one
or more producers that must go together), and for every unit j it lists each slice that
must be zero for the unit to be deleted with no change to the output:

- ``out``: producer rows: Linear/Conv ``weight[j]`` and ``bias[j]``;
- ``norm``: the BatchNorm that follows, ``weight[j]`` (γ) and ``bias[j]`` (β);
- ``stat``: that BatchNorm's running statistics (buffers: sliced when compacting, never
  trained or penalised);
- ``in``: every consumer's input slice (Linear in-features, Conv in-channels), the
  auxiliary slices of the paper. After a flatten a unit owns ``block`` consecutive
  in-features (its H·W positions).

Tracing is symbolic (``torch.fx``), so it needs no data and runs on meta-device models.
Residual additions join the families of both branches (the CNN's stem, every block's
conv2 and a projection shortcut share one family per stage); a unit's channel index
survives elementwise activations, dropout, per-channel pooling, a mean over spatial dims
and a flatten. A family that reaches anything else is kept but marked not removable, with
the reason: the model's output, LayerNorm (its mean and variance run over all channels,
so a zeroed channel still shifts the others), a split, concatenation or reshape,
attention, an addition with a tensor outside the family, a grouped conv. For the GPT that
leaves each block's MLP hidden units (fc → GELU → out) removable and the attention and
residual stream not. Without shapes the tracer knows a tensor's rank only from a conv
on: a BatchNorm1d on a Linear's output is followed after a mean over H, W (rank 2), not on
a rank it cannot tell. Conv inputs are taken to be batched (NCHW).

A model fx cannot trace (data-dependent control flow, an untraceable op) raises
:class:`~spx.errors.ConfigError` on ``prune.method`` naming the module and source line.

>>> from torch import nn
>>> mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
>>> [(g.name, g.size, g.removable) for g in groups(mlp)]
[('0', 3, True), ('2', 2, False)]
>>> [(s.name, s.kind, s.dim) for s in groups(mlp)[0].slices]
[('0.weight', 'out', 0), ('0.bias', 'out', 0), ('2.weight', 'in', 1)]
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.conv import _ConvNd

from spx.errors import ConfigError

Kind = Literal["out", "norm", "stat", "in"]


@dataclass(frozen=True)
class Slice:
    """Where the units of a group sit in one parameter or buffer: unit j owns the
    entries ``[j * block, (j + 1) * block)`` along ``dim``."""

    name: str
    kind: Kind
    dim: int
    block: int = 1

    def rows(self, tensor: Tensor, size: int) -> Tensor:
        """``tensor`` as (units, entries of each unit)."""
        return tensor.movedim(self.dim, 0).reshape(size, -1)

    def spread(self, values: Tensor, shape: torch.Size) -> Tensor:
        """Per-unit ``values`` broadcastable against a tensor of ``shape``."""
        view = [1] * len(shape)
        view[self.dim] = -1
        return values.repeat_interleave(self.block).view(view)


@dataclass(frozen=True)
class Group:
    """A family of ``size`` units that are removed one unit at a time."""

    name: str
    size: int
    slices: tuple[Slice, ...]
    removable: bool = True
    reason: str = ""  # why not, when not removable

    @property
    def trained(self) -> tuple[Slice, ...]:
        """The slices that make up x_g (parameters: everything but running statistics)."""
        return tuple(s for s in self.slices if s.kind != "stat")

    def numel(self, tensors: dict[str, Tensor]) -> int:
        """Entries of one unit's x_g."""
        return sum(tensors[s.name].numel() // self.size for s in self.trained)


def resolve(model: nn.Module, name: str) -> Tensor:
    """A parameter or buffer by dotted name (tied parameters resolve under either name)."""
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_buffer(name)


def groups(model: nn.Module) -> list[Group]:
    """Every family of the model, removable or not, in graph order."""
    graph = trace(model)
    families = _Analysis(model).run(graph)
    out = families.groups()
    last = getattr(model, "output_layer", None)
    if last is not None:  # the model's outputs are never removable, however it is traced
        target = id(resolve(model, last))
        out = [_bar_group(g, target, model) for g in out]
    return out


def removable(model: nn.Module) -> list[Group]:
    return [g for g in groups(model) if g.removable]


def _bar_group(group: Group, target: int, model: nn.Module) -> Group:
    outs = [s for s in group.slices if s.kind == "out"]
    if group.removable and any(id(resolve(model, s.name)) == target for s in outs):
        return Group(group.name, group.size, group.slices, False, "the model's output layer")
    return group


# -- tracing ------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """Remembers which modules were being traced when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.failed_in: list[str] | None = None

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        self.stack.append(f"{self.path_of_module(m) or '<root>'} ({type(m).__name__})")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = list(self.stack)
            raise
        finally:
            self.stack.pop()


def trace(model: nn.Module) -> fx.Graph:
    """The model's fx graph; ConfigError (``prune.method``) naming where tracing failed."""
    tracer = _Tracer()
    try:
        return tracer.trace(model)
    except Exception as exc:
        where = tracer.failed_in[-1] if tracer.failed_in else f"<root> ({type(model).__name__})"
        line = _user_line(exc)
        raise ConfigError(
            f"cannot trace the model into zero-invariant groups: module {where}"
            f"{', at ' + line if line else ''}: {type(exc).__name__}: {exc}",
            field="prune.method",
        ) from None


def _user_line(exc: BaseException) -> str:
    """The innermost traceback line outside torch and this module."""
    torch_dir = str(Path(torch.__file__).parent)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(torch_dir) and f.filename != __file__
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} `{(f.line or '').strip()}`"


# -- the analysis: which tensor dim carries which family's units ----------------------------


@dataclass(frozen=True)
class _Tag:
    """A tensor whose dim ``dim`` is indexed by family ``fam``'s units (``block`` entries
    each; None until a consumer tells). ``dim`` is absolute when ``rank`` is known, else
    counted from the end."""

    fam: int
    dim: int
    rank: int | None
    block: int | None = 1

    @property
    def last(self) -> bool:
        return self.dim == -1 or (self.rank is not None and self.dim == self.rank - 1)

    @property
    def channels(self) -> bool:  # NC... layout: dim 1 of a tensor of known rank >= 3
        return self.dim == 1 and self.rank is not None and self.rank >= 3 and self.block == 1


@dataclass
class _Family:
    size: int
    slices: list[Slice] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)
    barriers: list[str] = field(default_factory=list)


class _Families:
    """Union-find over families."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.items: list[_Family] = []

    def new(self, size: int) -> int:
        self.parent.append(len(self.items))
        self.items.append(_Family(size))
        return len(self.items) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def get(self, i: int) -> _Family:
        return self.items[self.find(i)]

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        keep, gone = (a, b) if a < b else (b, a)
        fa, fb = self.items[keep], self.items[gone]
        if fa.size != fb.size:
            fa.barriers.append(f"joined with a family of {fb.size} units")
        fa.slices += fb.slices
        fa.producers += fb.producers
        fa.barriers += fb.barriers
        self.parent[gone] = keep
        return keep

    def bar(self, i: int, reason: str) -> None:
        self.get(i).barriers.append(reason)

    def groups(self) -> list[Group]:
        out = []
        for i, fam in enumerate(self.items):
            if self.find(i) != i or not fam.producers:
                continue
            slices = tuple(dict.fromkeys(fam.slices))  # a module called twice adds twice
            reason = "; ".join(dict.fromkeys(fam.barriers))
            out.append(Group("+".join(fam.producers), fam.size, slices, not reason, reason))
        return out


# Ops that keep a unit's channel index (and map every unit on its own), by name.
_UNARY = {"relu", "relu_", "relu6", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "elu"}
_UNARY |= {"hardtanh", "hardswish", "mish", "softplus", "dropout", "neg", "contiguous", "clone"}
_UNARY_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Mish,
    nn.Softplus,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Identity,
)
_POOL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_POOL = {
    f"{kind}_pool{n}d" for kind in ("max", "avg", "adaptive_avg", "adaptive_max") for n in (1, 2, 3)
}
_METADATA = {"getattr", "size", "dim"}  # reading shapes: no data flows
_CONVS: dict[type[nn.Module], int] = {nn.Conv1d: 3, nn.Conv2d: 4, nn.Conv3d: 5}
_NORMS: dict[type[nn.Module], int] = {nn.BatchNorm1d: 3, nn.BatchNorm2d: 4, nn.BatchNorm3d: 5}


class _Analysis:
    def __init__(self, model: nn.Module):
        self.model = model
        self.fams = _Families()
        self.tags: dict[fx.Node, _Tag | None] = {}
        self.made: dict[str, int] = {}  # module path -> the family of its outputs
        self.fed: dict[str, int] = {}  # module path -> the family of its inputs

    def run(self, graph: fx.Graph) -> _Families:
        for node in graph.nodes:
            self.tags[node] = self.visit(node)
        return self.fams

    def visit(self, node: fx.Node) -> _Tag | None:
        if node.op in ("placeholder", "get_attr"):
            return None
        if node.op == "output":
            self.bar_all(node, "the model's output")
            return None
        if node.op == "call_module":
            return self.module(node, self.model.get_submodule(str(node.target)))
        name = getattr(node.target, "__name__", str(node.target))
        return self.function(node, name.removeprefix("__").removesuffix("__"))

    # -- helpers -------------------------------------------------------------------------

    def tag(self, arg: Any) -> _Tag | None:
        return self.tags.get(arg) if isinstance(arg, fx.Node) else None

    def bar_all(self, node: fx.Node, reason: str) -> None:
        def visit(arg: Any) -> Any:
            tag = self.tag(arg)
            if tag is not None:
                self.fams.bar(tag.fam, reason)
            return arg

        fx.node.map_aggregate((node.args, node.kwargs), visit)

    def slices(self, fam: int, path: str, kind: Kind, names: list[str], dim: int, block=1):
        for name in names:
            if getattr(self.model.get_submodule(path), name, None) is not None:
                self.fams.get(fam).slices.append(Slice(f"{path}.{name}", kind, dim, block))

    def produce(self, path: str, size: int, names: list[str]) -> int:
        fam = self.fams.new(size)
        self.fams.get(fam).producers.append(path)
        self.slices(fam, path, "out", names, 0)
        if path in self.made:  # a module used twice: both outputs carry the same units
            fam = self.fams.union(self.made[path], fam)
        self.made[path] = fam
        return fam

    def consume(self, path: str, tag: _Tag, block: int) -> None:
        self.slices(tag.fam, path, "in", ["weight"], 1, block)
        if path in self.fed:
            self.fams.union(self.fed[path], tag.fam)
        self.fed[path] = tag.fam

    # -- modules -------------------------------------------------------------------------

    def module(self, node: fx.Node, mod: nn.Module) -> _Tag | None:
        path = str(node.target)
        tag = self.tag(node.args[0]) if node.args else None
        if isinstance(mod, nn.Linear):
            return self.linear(node, path, mod, tag)
        if type(mod) in _CONVS:
            assert isinstance(mod, _ConvNd)
            return self.conv(node, path, mod, tag)
        if type(mod) in _NORMS and tag is not None and _normalises(mod, tag):
            names = ["weight", "bias"]
            self.slices(tag.fam, path, "norm", names, 0)
            self.slices(tag.fam, path, "stat", ["running_mean", "running_var"], 0)
            return tag
        if isinstance(mod, _UNARY_MODULES):
            return tag
        if isinstance(mod, _POOL_MODULES) and tag is not None and tag.channels:
            return tag
        if isinstance(mod, nn.Flatten):
            return self.flatten(node, tag, mod.start_dim, mod.end_dim)
        self.bar_all(node, f"{type(mod).__name__} {path}")
        return None

    def linear(self, node: fx.Node, path: str, mod: nn.Linear, tag: _Tag | None) -> _Tag:
        if tag is not None:
            size = self.fams.get(tag.fam).size
            block = tag.block if tag.block is not None else mod.in_features // size
            if tag.last and block >= 1 and size * block == mod.in_features:
                self.consume(path, tag, block)
            else:
                self.fams.bar(tag.fam, f"Linear {path} over another dim")
        fam = self.produce(path, mod.out_features, ["weight", "bias"])
        rank = tag.rank if tag is not None else None
        return _Tag(fam, -1 if rank is None else rank - 1, rank)

    def conv(self, node: fx.Node, path: str, mod: _ConvNd, tag: _Tag | None) -> _Tag:
        rank = _CONVS[type(mod)]
        grouped = mod.groups != 1
        if tag is not None:
            if tag.channels and tag.rank == rank and not grouped:
                self.consume(path, tag, 1)
            else:
                self.fams.bar(tag.fam, f"{type(mod).__name__} {path}")
        fam = self.produce(path, mod.out_channels, ["weight", "bias"])
        if grouped:
            self.fams.bar(fam, f"grouped {type(mod).__name__} {path}")
        return _Tag(fam, 1, rank)

    # -- functions and methods ------------------------------------------------------------

    def function(self, node: fx.Node, name: str) -> _Tag | None:
        args = node.args
        tag = self.tag(args[0]) if args else None
        if name in _METADATA:
            return None
        if name in _UNARY:
            return tag
        if name in ("add", "iadd", "sub", "isub"):
            return self.add(node)
        if name in ("mul", "imul", "truediv", "itruediv"):  # by a number: scales each unit
            a, b = (args + (None,))[:2]
            if tag is not None and isinstance(b, int | float):
                return tag
            if name in ("mul", "imul") and isinstance(a, int | float) and self.tag(b):
                return self.tag(b)
        elif name in _POOL:
            if tag is not None and tag.channels:
                return tag
        elif name in ("mean", "sum", "amax"):
            return self.reduce(node, tag)
        elif name == "flatten":
            start = _arg(node, 1, "start_dim", 0)
            return self.flatten(node, tag, start, _arg(node, 2, "end_dim", -1))
        elif name in ("view", "reshape") and tag is not None:
            shape = args[1:] if len(args) != 2 else args[1]
            if isinstance(shape, tuple | list) and len(shape) == 2 and shape[1] == -1:
                return self.flatten(node, tag, 1, -1)
        if tag is None and not any(self.tag(a) for a in _nodes(node)):
            return None
        self.bar_all(node, f"op {name}")
        return None

    def add(self, node: fx.Node) -> _Tag | None:
        a, b = (node.args + (None,))[:2]
        ta, tb = self.tag(a), self.tag(b)
        if ta is not None and tb is not None:
            if (ta.dim, ta.rank, ta.block) == (tb.dim, tb.rank, tb.block):
                return _Tag(self.fams.union(ta.fam, tb.fam), ta.dim, ta.rank, ta.block)
        elif (ta or tb) is not None and isinstance(a if tb else b, int | float):
            return ta or tb
        elif ta is None and tb is None:
            return None
        self.bar_all(node, "an addition with a tensor outside the family")
        return None

    def reduce(self, node: fx.Node, tag: _Tag | None) -> _Tag | None:
        if tag is None:
            return None
        dims = _arg(node, 1, "dim", None)
        keep = _arg(node, 2, "keepdim", False)
        dims = (dims,) if isinstance(dims, int) else dims
        if isinstance(dims, tuple | list) and dims and tag.rank is not None:
            dims = {d % tag.rank for d in dims}
            if tag.dim not in dims:
                below = sum(1 for d in dims if d < tag.dim)
                rank = tag.rank if keep else tag.rank - len(dims)
                return _Tag(tag.fam, tag.dim if keep else tag.dim - below, rank, tag.block)
        self.bar_all(node, f"a reduction {node.target}")
        return None

    def flatten(self, node: fx.Node, tag: _Tag | None, start: int, end: int) -> _Tag | None:
        if tag is None:
            return None
        if tag.channels and tag.rank is not None and start == 1 and end in (-1, tag.rank - 1):
            return _Tag(tag.fam, 1, 2, None)
        self.bar_all(node, "a flatten")
        return None


def _normalises(mod: nn.Module, tag: _Tag) -> bool:
    """Whether a BatchNorm runs over the family's dim (BatchNorm1d also takes (N, C))."""
    ranks = (2, 3) if isinstance(mod, nn.BatchNorm1d) else (_NORMS[type(mod)],)
    return tag.dim == 1 and tag.rank in ranks and tag.block == 1


def _arg(node: fx.Node, index: int, key: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(key, default)


def _nodes(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


# -- keep vectors -------------------------------------------------------------------------


def kept_count(size: int, sparsity: float) -> int:
    """⌊(1 − s)·n⌋ units kept of n (a hair of slack so 1 − 0.9 counts as 0.1)."""
    return math.floor((1 - sparsity) * size + 1e-9)


def multipliers(
    space: list[Group], keep: list[Tensor], tensors: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Per parameter/buffer name, the 0/1 multiplier (its dtype, broadcastable) that zeroes
    every dropped unit's slice in it; running statistics are left alone."""
    out: dict[str, Tensor] = {}
    for group, alive in zip(space, keep, strict=True):
        for s in group.trained:
            t = tensors[s.name]
            m = s.spread(alive.to(t.dtype), t.shape)
            out[s.name] = out[s.name] * m if s.name in out else m
    return out
