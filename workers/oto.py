"""Structured methods over zero-invariant groups: OTO's DHSPG (ALGORITHMS.md §4c) and
random node masks (§3). One unit of a :class:`~spx.workers.zig.Group` is one group x_g;
its slices (producer rows, BatchNorm γ/β, consumers' input slices) are zeroed together, so
a dropped unit can be cut out of the model (``compact.py``) with identical outputs.

Both keep a boolean keep-vector per removable family. Dropped units are reflected in the
MaskSet (weight rows and consumer columns), so model/sparsity, model/params and
model/flops fall; their biases, norms and non-prunable weights (the CNN's stem) are held
at zero too, their gradients and optimizer slots are zeroed, and they never come back.

``nodes`` (§3): at init every removable family keeps exactly ⌊(1 − s)·n⌋ of its n units,
drawn uniformly from ``torch.Generator().manual_seed(prune.mask_seed)``, or when that is
unset from the trial's own mask RNG stream (seeded from ``train.seed``), fixed for the
whole run. :func:`sample_nodes` is the draw, for random sparse NAS.

``oto`` (§4c). The base optimizer (SGD or AdamW, ``train.optimizer``) takes its step
first; ``after_step`` derives the base direction from the weights before and after it,
d = (x − x̂)/lr, less lr·wd·x for AdamW's decoupled decay (so d is m̂/(√v̂ + ε) for AdamW
and the momentum/L2 gradient for SGD, as in the reference), then on the trial point x̂:

1. at step ``oto_start``·T it partitions once: score_g = ½·normalize(cos(−x_g, −d_g)) +
   ½·normalize(1/(‖x_g‖/|g| + 1e-6)) (L2-normalised over all groups); the top
   K = ⌊|G|·min(τ + 0.05, 0.999)⌋ form G_p;
2. while fewer than Z groups are zero, every live G_p group gets the group-lasso
   subgradient x̂_g −= lr·λ_g·x_g/‖x_g‖, λ_g adaptive (λ_lo, λ_hi, λ_amplify, hat-λ of
   §4c) where ⟨x_g, d_g⟩ < 0 once the warm-up is over, λ elsewhere;
3. from step ``oto_project``·T, the half-space projection zeroes live G_p groups with
   ⟨x̂_g, x_g⟩ < ε‖x_g‖², capped so no more than Z groups are zero and no family loses its
   last unit (a random subset of the candidates when over the cap, from the mask stream);
4. zero groups stay zero; G_np groups take plain optimizer steps.

τ = ``prune.sparsity`` is a fraction of groups (units): Z = |G| − ⌊(1 − τ)·|G|⌋ over all
removable families. λ, λ_amplify, hat-λ come from the §4c table per base optimizer
(SGD: 1e-3, 2, 10; Adam/AdamW: 1e-2, 20, 1e3); ``prune.oto_lambda`` overrides λ.

Choices where §4c is silent or unverified (documented, flag-controlled where it matters):

- Penalty start = partition step (``prune.oto_start``, default 0.1·T: a partition at init
  scores noise). The adaptive λ starts at max(start, project // 2), the reference's
  ``warm_up_steps`` default; before it G_p takes the constant-λ penalty.
- Target enforcement: the reference can end short of τ. Here, after step
  ``prune.oto_end``·T (default 0.75·T, leaving steps to recover) a shortfall is closed by
  zeroing the live G_p groups of least ‖x_g‖ (then G_np's), so every trial ends exactly at
  Z zero groups. Set ``prune.oto_end`` to 1 to enforce only after the last step.
- The projection cap counts groups over all families (the reference caps per parameter
  group with a formula that looks inverted); each family keeps at least one unit.
- x_g includes the consumers' input slices (the reference's auxiliary rows), so a weight
  in two families gets both penalties; running statistics are not in x_g.
- A step with lr = 0 skips DHSPG (d is undefined); the partition waits for the next.

>>> from spx.workers.config import PruneConfig
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
>>> pruner = Nodes(PruneConfig(method="nodes", sparsity=0.5, mask_seed=1), model, steps=10)
>>> [int(k.sum()) for k in pruner.keep], pruner.masks.masks["0.weight"].sum().item()
([3], 12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from spx.errors import ConfigError
from spx.workers import zig
from spx.workers.knobs import FieldError, MethodKnobs, PruneSettings, TrialView, read_knobs
from spx.workers.pruner import Pruner

TOLERANCE = 0.05  # §4c: K = ⌊|G|·min(τ + tolerance, 0.999)⌋
SAFE = 1e-8


def sample_nodes(
    space: list[zig.Group], sparsity: float, generator: torch.Generator
) -> list[Tensor]:
    """Keep-vectors keeping exactly ⌊(1 − s)·n⌋ random units of each family (§3)."""
    keep = []
    for group in space:
        chosen = torch.randperm(group.size, generator=generator)[
            : zig.kept_count(group.size, sparsity)
        ]
        mask = torch.zeros(group.size, dtype=torch.bool)
        mask[chosen] = True
        keep.append(mask)
    return keep


class GroupPruner(Pruner):
    """Shared machinery: keep-vectors over the removable families, and everything that
    follows from them (masks, zeroed slices, gradients and optimizer slots)."""

    checkpoint_key = "groups"
    needs_gradients = False
    compacts = True
    follows_schedule = False
    zero_stages = (0,)  # zeroes gradients and optimizer slots of whole groups itself

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        self.space = zig.removable(model)
        self.check_space(cfg, self.space)
        self.tensors = {s.name: zig.resolve(model, s.name) for g in self.space for s in g.slices}
        device = next(iter(self.tensors.values())).device if self.tensors else None
        self.keep = [torch.ones(g.size, dtype=torch.bool, device=device) for g in self.space]
        self.refresh()

    @classmethod
    def check_space(cls, cfg: PruneSettings, space: list[zig.Group]) -> None:
        """Raise ConfigError (``prune.sparsity``) when the target cannot be reached."""
        if cfg.sparsity > 0 and not space:
            raise ConfigError(
                f"{cfg.method} found no removable units in this model",
                "prune.sparsity",
                cfg.sparsity,
            )

    @classmethod
    def validate(cls, cfg: TrialView, model: nn.Module) -> None:
        try:
            space = zig.removable(model)
        except ConfigError as exc:
            raise ConfigError(exc.reason, exc.field, cfg.prune.method) from None
        cls.check_space(cfg.prune, space)

    # -- keep-vectors and what follows from them -------------------------------------------

    def kept(self) -> dict[str, Tensor]:
        """Group name -> which of its units are alive (True)."""
        return {g.name: k.clone() for g, k in zip(self.space, self.keep, strict=True)}

    def zeros(self) -> int:
        return sum(int((~k).sum()) for k in self.keep)

    def refresh(self) -> None:
        """Recompute multipliers and masks after the keep-vectors changed."""
        self.multipliers = zig.multipliers(self.space, self.keep, self.tensors)
        for name, m in self.multipliers.items():
            if name in self.masks.masks:  # replaced, never edited (MaskSet caches by identity)
                self.masks.masks[name] = m.bool().expand_as(self.tensors[name]).contiguous()

    @torch.no_grad()
    def apply(self) -> None:
        for name, m in self.multipliers.items():
            self.tensors[name].mul_(m)

    @torch.no_grad()
    def mask_grads(self) -> None:
        for name, m in self.multipliers.items():
            grad = self.tensors[name].grad
            if grad is not None:
                grad.mul_(m)

    @torch.no_grad()
    def mask_state(self, optimizer: torch.optim.Optimizer) -> None:
        for name, m in self.multipliers.items():
            tensor = self.tensors[name]
            for value in optimizer.state.get(tensor, {}).values():
                if torch.is_tensor(value) and value.shape == tensor.shape:
                    value.mul_(m)

    # -- loop hooks ----------------------------------------------------------------------

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        return False

    def after_step(self) -> None:
        self.apply()

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        for i, keep in enumerate(self.keep):
            tensors[f"{self.checkpoint_key}/keep/{i}"] = keep
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        for i, keep in enumerate(self.keep):
            self.keep[i] = tensors[f"{self.checkpoint_key}/keep/{i}"].bool().to(keep.device)
        self.refresh()


class Nodes(GroupPruner):
    """A random keep-mask over whole units (zero-invariant groups), fixed at init."""

    name = "nodes"
    masks_at_step0 = True

    class Knobs(MethodKnobs):
        mask_seed: int | None = Field(
            None, ge=0, le=2**63 - 1, description="node-mask seed; unset: from train.seed"
        )

    knobs: Knobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        generator = self.generator
        if self.knobs.mask_seed is not None:
            generator = torch.Generator().manual_seed(self.knobs.mask_seed)
        self.keep = [
            k.to(self.keep[0].device) for k in sample_nodes(self.space, cfg.sparsity, generator)
        ]
        self.refresh()

    @classmethod
    def check_space(cls, cfg: PruneSettings, space: list[zig.Group]) -> None:
        super().check_space(cfg, space)
        for group in space:
            if zig.kept_count(group.size, cfg.sparsity) == 0:
                raise ConfigError(
                    f"nodes would keep no unit of {group.name!r} ({group.size} units); "
                    f"lower it below {1 - 1 / group.size:g}",
                    "prune.sparsity",
                    cfg.sparsity,
                )

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        if step != 0:
            return False
        self.apply()
        self.mask_state(optimizer)
        return True


@dataclass(frozen=True)
class Variant:
    """§4c's per-optimizer λ, λ_amplify and hat-λ coefficient."""

    lam: float
    amplify: float
    hat: float


SGD_VARIANT = Variant(1e-3, 2.0, 10.0)
ADAM_VARIANT = Variant(1e-2, 20.0, 1e3)


def group_lambdas(norm: Tensor, xd: Tensor, dd: Tensor, variant: Variant) -> Tensor:
    """§4c's adaptive λ_g per group from ‖x_g‖, ⟨x_g, d_g⟩ and ‖d_g‖²: where ⟨x_g, d_g⟩ < 0,
    clip(λ_amplify·λ_lo, λ, λ·hat) with λ_lo = −⟨x, d⟩/‖x‖, or (λ_lo + λ_hi)/2 when that
    reaches λ_hi = −‖d‖²‖x‖/⟨x, d⟩; λ elsewhere.

    >>> lam = group_lambdas(torch.ones(3), torch.tensor([-1.0, -0.01, 1.0]), torch.full((3,), 4.0),
    ...                     ADAM_VARIANT)
    >>> [round(v, 4) for v in lam.tolist()]  # midpoint (λ_hi = 4), 20·λ_lo, λ (⟨x, d⟩ > 0)
    [2.5, 0.2, 0.01]
    """
    lo = -xd / norm.clamp_min(SAFE)
    hi = -dd * norm / xd.clamp_max(-SAFE)
    tuned = (variant.amplify * lo).clamp(variant.lam, variant.lam * variant.hat)
    tuned = torch.where(tuned >= hi, (lo + hi) / 2, tuned)
    return torch.where(xd < 0, tuned, torch.full_like(norm, variant.lam))


@dataclass(frozen=True)
class Phases:
    """The steps (0-based, each acting after that step's optimizer update) where DHSPG
    partitions, turns λ adaptive, starts projecting, and enforces the target."""

    partition: int
    adaptive: int
    project: int
    enforce: int

    @classmethod
    def of(cls, cfg: OTOKnobs, steps: int) -> Phases:
        last = steps - 1
        partition = min(round(cfg.oto_start * steps), last)
        project = max(min(round(cfg.oto_project * steps), last), partition)
        enforce = max(min(round(cfg.oto_end * steps), steps) - 1, partition)
        return cls(partition, max(partition, project // 2), project, enforce)


@dataclass
class _Step:
    """What after_backward saves for after_step: x before the base step, lr and decay."""

    step: int
    before: dict[str, Tensor] | None
    lr: dict[str, float]
    decay: dict[str, float]  # AdamW's decoupled wd (0 for SGD, whose wd is in d)
    variant: Variant
    optimizer: torch.optim.Optimizer


class OTOKnobs(MethodKnobs):
    oto_lambda: float | None = Field(
        None, gt=0, le=100, description="group-lasso λ; unset: 1e-2 (adamw), 1e-3 (sgd)"
    )
    oto_start: float = Field(
        0.1, ge=0, lt=1, description="G_p partition and penalty start, of train.steps"
    )
    oto_project: float = Field(
        0.2, ge=0, lt=1, description="half-space projection start, of train.steps"
    )
    oto_end: float = Field(
        0.75, gt=0, le=1, description="target enforced by then (least-norm), of train.steps"
    )
    oto_epsilon: float = Field(
        0.0, ge=0, lt=1, description="half-space ε: zero g if <x̂_g, x_g> < ε·|x_g|²"
    )


class OTO(GroupPruner):
    """OTOv2's DHSPG over zero-invariant groups: train, then compact exactly."""

    name = "oto"
    checkpoint_key = "oto"
    Knobs = OTOKnobs
    knobs: OTOKnobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        self.phases = Phases.of(self.knobs, steps)
        total = sum(g.size for g in self.space)
        self.target = total - zig.kept_count(total, cfg.sparsity)
        self.penalized: list[Tensor] | None = None  # G_p, once partitioned
        self.changed = False
        self.projected = 0  # groups zeroed by the half-space projection ...
        self.enforced = 0  # ... and by the target enforcement
        self.numel = [g.numel(self.tensors) for g in self.space]
        self._pending: _Step | None = None

    @classmethod
    def check(cls, cfg: TrialView) -> None:
        k = read_knobs(OTOKnobs, cfg.prune)
        if not k.oto_start <= k.oto_project <= k.oto_end:
            raise FieldError(
                f"oto needs prune.oto_start <= prune.oto_project <= prune.oto_end (got "
                f"{k.oto_start:g}, {k.oto_project:g}, {k.oto_end:g})",
                "prune.oto_project",
                k.oto_project,
            )

    @classmethod
    def check_space(cls, cfg: PruneSettings, space: list[zig.Group]) -> None:
        super().check_space(cfg, space)
        total = sum(g.size for g in space)
        target = total - zig.kept_count(total, cfg.sparsity)
        room = sum(g.size - 1 for g in space)
        if target > room:
            raise ConfigError(
                f"oto would zero {target} of {total} groups, but every family keeps one unit "
                f"(at most {room})",
                "prune.sparsity",
                cfg.sparsity,
            )

    # -- loop hooks ----------------------------------------------------------------------

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        changed, self.changed = self.changed, False  # masks changed after the last step
        return changed

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        self.mask_grads()
        working = (
            bool(self.space)
            and step >= self.phases.partition
            and (self.penalized is None or self.zeros() < self.target)
        )
        if not working and step != self.phases.enforce:
            return False
        hyper = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        trained = {n: t for n, t in self.tensors.items() if id(t) in hyper}
        lr = {n: float(hyper[id(t)]["lr"]) for n, t in trained.items()}
        adamw = isinstance(optimizer, torch.optim.AdamW)
        decay = {
            n: float(hyper[id(t)]["weight_decay"]) if adamw else 0.0 for n, t in trained.items()
        }
        variant = SGD_VARIANT if isinstance(optimizer, torch.optim.SGD) else ADAM_VARIANT
        if self.knobs.oto_lambda is not None:
            variant = Variant(self.knobs.oto_lambda, variant.amplify, variant.hat)
        before = {n: t.detach().clone() for n, t in trained.items()} if working else None
        self._pending = _Step(step, before, lr, decay, variant, optimizer)
        return False  # DHSPG acts after the step; before_step reports what it changed

    def after_step(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            with torch.no_grad():
                self._dhspg(pending)
        self.apply()

    # -- DHSPG ---------------------------------------------------------------------------

    def _dhspg(self, s: _Step) -> None:
        dropped: list[Tensor] = [torch.zeros_like(k) for k in self.keep]
        if s.before is not None and all(v > 0 for v in s.lr.values()):
            x, now = s.before, self.tensors
            d = {n: (x[n] - now[n]) / s.lr[n] - s.decay[n] * x[n] for n in x}
            xx, xd, dd = self._dots(x, x), self._dots(x, d), self._dots(d, d)
            if self.penalized is None:
                self._partition(xx, xd, dd)
            assert self.penalized is not None
            if self.zeros() < self.target:
                live = [
                    p & k & (q > 0) for p, k, q in zip(self.penalized, self.keep, xx, strict=True)
                ]
                self._penalise(s, x, live, xx, xd, dd)
                if s.step >= self.phases.project:
                    dropped = self._project(live, self._dots(now, x), xx)
        self.projected += sum(int(z.sum()) for z in dropped)
        if s.step == self.phases.enforce:
            dropped = self._enforce(dropped)
            self.enforced = self.zeros() + sum(int(z.sum()) for z in dropped) - self.projected
        if any(bool(k.any()) for k in dropped):
            self.keep = [k & ~z for k, z in zip(self.keep, dropped, strict=True)]
            self.refresh()
            self.mask_state(s.optimizer)
            self.changed = True

    def _dots(self, a: dict[str, Tensor], b: dict[str, Tensor]) -> list[Tensor]:
        """Per group, the per-unit inner products ⟨a_g, b_g⟩ over its trained slices."""
        out = []
        for group in self.space:
            total = torch.zeros(group.size, device=self.keep[0].device)
            for sl in group.trained:
                if sl.name in a and sl.name in b:
                    ra, rb = sl.rows(a[sl.name], group.size), sl.rows(b[sl.name], group.size)
                    total += (ra.float() * rb.float()).sum(1)
            out.append(total)
        return out

    def _partition(self, xx: list[Tensor], xd: list[Tensor], dd: list[Tensor]) -> None:
        norm, dnorm, inner = torch.cat(xx).sqrt(), torch.cat(dd).sqrt(), torch.cat(xd)
        denom = norm * dnorm
        cos = torch.where(denom > 0, inner / denom.clamp_min(SAFE), torch.zeros_like(inner))
        sizes = torch.cat(
            [torch.full((g.size,), float(n)) for g, n in zip(self.space, self.numel, strict=True)]
        )
        avg = norm / sizes.to(norm.device)
        score = 0.5 * F.normalize(cos, dim=0) + 0.5 * F.normalize(1.0 / (avg + 1e-6), dim=0)
        k = math.floor(score.numel() * min(self.cfg.sparsity + TOLERANCE, 0.999))
        chosen = torch.zeros_like(score, dtype=torch.bool)
        chosen[torch.topk(score, k).indices] = True
        self.penalized = list(chosen.split([g.size for g in self.space]))

    def _penalise(self, s: _Step, x: dict[str, Tensor], live: list[Tensor], xx, xd, dd) -> None:
        """x̂_g −= lr·λ_g·x_g/‖x_g‖ on the live G_p groups."""
        for i, group in enumerate(self.space):
            if not bool(live[i].any()):
                continue
            norm = xx[i].sqrt()
            if s.step >= self.phases.adaptive:
                lam = group_lambdas(norm, xd[i], dd[i], s.variant)
            else:
                lam = torch.full_like(norm, s.variant.lam)
            coef = torch.where(live[i], lam / norm.clamp_min(SAFE), torch.zeros_like(lam))
            for sl in group.trained:
                if sl.name in x:
                    t = self.tensors[sl.name]
                    t.sub_((s.lr[sl.name] * sl.spread(coef, t.shape) * x[sl.name]).to(t.dtype))

    def _project(self, live: list[Tensor], inner: list[Tensor], xx: list[Tensor]) -> list[Tensor]:
        eps = self.knobs.oto_epsilon
        cands = [lv & (ip < eps * q) for lv, ip, q in zip(live, inner, xx, strict=True)]
        return self._take(cands, order=None)

    def _enforce(self, dropped: list[Tensor]) -> list[Tensor]:
        """Close any shortfall to Z with the least-norm live groups, G_p first."""
        keep = [k & ~z for k, z in zip(self.keep, dropped, strict=True)]
        short = self.target - sum(int((~k).sum()) for k in keep)
        if short <= 0:
            return dropped
        norms = torch.cat(self._dots(self.tensors, self.tensors))
        live = torch.cat(keep)
        pen = torch.cat(self.penalized) if self.penalized is not None else torch.ones_like(live)
        ranked = [int(i) for i in torch.argsort(norms, stable=True) if bool(live[i])]
        order = [i for i in ranked if bool(pen[i])] + [i for i in ranked if not bool(pen[i])]
        extra = self._take(dropped, order, keep)
        return [z | e for z, e in zip(dropped, extra, strict=True)]

    def _take(self, cands: list[Tensor], order: list[int] | None, keep=None) -> list[Tensor]:
        """The candidates (flat ``order``, else random when over a cap) that fit the caps:
        at most Z zero groups, at least one unit per family."""
        keep = self.keep if keep is None else keep
        room = self.target - sum(int((~k).sum()) for k in keep)
        family_room = [int(k.sum()) - 1 for k in keep]
        flat = torch.cat(cands)
        taken = torch.zeros_like(flat)
        if order is None:
            idx = flat.nonzero().flatten()
            fits = all(int(c.sum()) <= r for c, r in zip(cands, family_room, strict=True))
            if len(idx) <= room and fits:
                return cands
            order = [int(i) for i in idx[torch.randperm(len(idx), generator=self.generator)]]
        starts = [0]
        for g in self.space:
            starts.append(starts[-1] + g.size)
        for i in order:
            if room == 0:
                break
            fam = next(f for f in range(len(self.space)) if i < starts[f + 1])
            if family_room[fam] > 0:
                taken[i] = True
                family_room[fam] -= 1
                room -= 1
        return list(taken.split([g.size for g in self.space]))

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        if self.penalized is not None:
            for i, pen in enumerate(self.penalized):
                tensors[f"oto/penalized/{i}"] = pen
        meta = {
            **meta,
            "partitioned": self.penalized is not None,
            "changed": self.changed,
            "projected": self.projected,
            "enforced": self.enforced,
        }
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        self.changed = bool(meta.get("changed", False))
        self.projected = int(meta.get("projected", 0))
        self.enforced = int(meta.get("enforced", 0))
        self.penalized = None
        if meta.get("partitioned"):
            device = self.keep[0].device
            n = len(self.space)
            self.penalized = [tensors[f"oto/penalized/{i}"].bool().to(device) for i in range(n)]
