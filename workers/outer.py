"""Synchronising the workers of one trial: DDP, DiLoCo and SparseLoCo (ALGORITHMS.md §1).

A :class:`Sync` plugs into the one training loop (``loop.py``) through three hooks:
``start`` (rank 0's weights to everyone), ``after_backward`` (DDP's dense gradient mean) and
``after_step`` (every H = ``comm.inner_steps`` steps, and at the last step, the outer step).

- DDP: a dense fp32 mean all-reduce of the gradients every step.
- DiLoCo (§1a): pseudo-gradient Δ_r = θ_master − θ_r (§1f pitfall 1), dense mean
  all-reduce, outer SGD with Nesterov momentum (lr 0.7, μ 0.9 by default).
- SparseLoCo (§1b): e ← β e + α Δ_r (α = ``comm.outer_lr`` lives *inside* the EF, the outer
  SGD step has lr 1, so α is applied once: the "α applied twice" note of §1b); chunked top-k,
  2-bit codes; e ← e − (dequantized transmitted tensor) (§1f pitfall 2); an all-gather of the
  packed payloads (not an all-reduce, pitfall 3); contributor-mean aggregation (the
  ``comm.sparse_agg`` flag, §1b); θ_master ← θ_master − Δ̄, no outer momentum unless
  ``comm.outer_momentum`` asks for it (an ablation). Every tensor is compressed, biases and
  norms too (pitfall 9). Inner AdamW state is never reset (pitfall 8).

Pruning: rank 0's masks are broadcast at every mask update so all workers prune alike; the
pseudo-gradient and the EF accumulator are masked, so a pruned coordinate is never selected
for sending, and masks are re-applied to θ_master after every outer step, so nothing pruned
is revived.

Accounting (§1d), per worker: ``comm/bytes_sent`` (cumulative; measured from the packed
buffers, ``WirePayload.nbytes``, or the dense tensor's bytes; DeepSpeed's own gradient
mean is counted as DDP's), ``comm/bytes_dense`` (fp32
equivalent), ``comm/compression`` (their ratio), ``comm/sync_bytes`` and
``comm/sync_bits_per_param`` (the last sync), ``comm/bytes_received``, ``comm/syncs``,
``time/comm_s`` and ``time/compute_s`` (cumulative seconds).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from spx.kernels.aggregate import aggregate
from spx.kernels.compress import SparseLoCoCompressor
from spx.kernels.feedback import ef_subtract, ef_update
from spx.kernels.wire import WirePayload
from spx.workers.config import CommConfig
from spx.workers.distributed import Communicator
from spx.workers.masks import MaskSet


class Sync:
    """Base: DDP-free, outer-step-free bookkeeping shared by every strategy."""

    def __init__(self, comm: Communicator, cfg: CommConfig, model: nn.Module, total_steps: int):
        self.comm, self.cfg, self.total = comm, cfg, total_steps
        self.rank, self.world = comm.rank, comm.world
        self.params = dict(model.named_parameters())
        self.numel = sum(p.numel() for p in self.params.values())
        self.counters = {"sent": 0.0, "dense": 0.0, "received": 0.0, "syncs": 0.0}
        self.last = {"sent": 0.0, "dense": 0.0}
        self.comm_s, self.started = 0.0, time.perf_counter()

    # -- loop hooks ---------------------------------------------------------------------

    @torch.no_grad()
    def start(self, masks: MaskSet, fresh: bool) -> None:
        """Rank 0's weights (and masks) to everyone at step 0; a restored run keeps its own."""
        if fresh:
            for p in self.params.values():
                self.comm.broadcast(p.data)
            self.sync_masks(masks)

    def after_backward(self) -> None:
        """Called between backward and the optimizer step (DDP only)."""

    def reduced_by_engine(self) -> None:
        """Called instead of ``after_backward`` when the engine (DeepSpeed) averaged the
        gradients itself (DDP only)."""

    @torch.no_grad()
    def after_step(self, step: int, masks: MaskSet, changed: bool) -> None:
        if changed:
            self.sync_masks(masks)
        if step % self.cfg.inner_steps == 0 or step == self.total:
            self.outer_step(masks)

    def outer_step(self, masks: MaskSet) -> None:
        """DDP has none; DiLoCo and SparseLoCo override."""

    def keep_going(self, decision: bool) -> bool:
        """Rank 0's early-termination decision, agreed by every worker."""
        flag = torch.tensor([1.0 if decision else 0.0])
        self.comm.broadcast(flag)
        return bool(flag.item())

    def check_step(self, step: int) -> None:
        """Every worker must resume from the same step, or the group would deadlock."""
        steps = torch.tensor([float(step), -float(step)])
        self.comm.all_reduce_max(steps)
        if steps[0].item() != -steps[1].item():
            from spx.errors import TrialError

            raise TrialError(
                f"workers resumed at different steps ({-steps[1].item():g}..{steps[0].item():g})"
            )

    @torch.no_grad()
    def sync_masks(self, masks: MaskSet) -> None:
        for name in list(masks.masks):
            mask = masks.masks[name].to(torch.uint8)
            self.comm.broadcast(mask)
            masks.masks[name] = mask.bool()  # replaced, never edited (MaskSet's contract)
        masks.apply()

    # -- accounting ---------------------------------------------------------------------

    def _timed(self, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        self.comm_s += time.perf_counter() - t0
        return out

    def _count(self, sent: float, received: float) -> None:
        self.last = {"sent": sent, "dense": 4.0 * self.numel}
        self.counters["sent"] += sent
        self.counters["dense"] += 4.0 * self.numel
        self.counters["received"] += received
        self.counters["syncs"] += 1

    def metrics(self) -> dict[str, float]:
        c = self.counters
        wall = time.perf_counter() - self.started
        return {
            "comm/bytes_sent": c["sent"],
            "comm/bytes_dense": c["dense"],
            "comm/bytes_received": c["received"],
            "comm/compression": c["dense"] / c["sent"] if c["sent"] else 0.0,
            "comm/syncs": c["syncs"],
            "comm/sync_bytes": self.last["sent"],
            "comm/sync_bits_per_param": 8.0 * self.last["sent"] / self.numel,
            "time/comm_s": self.comm_s,
            "time/compute_s": max(0.0, wall - self.comm_s),
        }

    # -- checkpoint ---------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, {"counters": dict(self.counters), "last": dict(self.last)}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.counters.update(meta["counters"])
        self.last.update(meta["last"])


class DDPSync(Sync):
    """Dense fp32 gradient mean every step (the quality reference)."""

    @torch.no_grad()
    def after_backward(self) -> None:
        params = list(self.params.values())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        self._timed(self.comm.all_reduce_mean, flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n
        self._count(4.0 * flat.numel(), 4.0 * flat.numel() * (self.world - 1))

    def reduced_by_engine(self) -> None:
        """DeepSpeed's engine averaged the same dense fp32 gradient inside its backward and
        step (ZeRO 2: a reduce-scatter, then an all-gather of the weights, the same bytes
        per worker as a ring all-reduce): counted alike, so ``comm/*`` compares across
        engines; its time is inside the step, so ``time/comm_s`` does not grow."""
        self._count(4.0 * self.numel, 4.0 * self.numel * (self.world - 1))


class _OuterSync(Sync):
    """Keeps θ_master and an optional Nesterov momentum buffer per tensor."""

    def __init__(self, comm: Communicator, cfg: CommConfig, model: nn.Module, total_steps: int):
        super().__init__(comm, cfg, model, total_steps)
        self.lr, self.mu = cfg.lr, cfg.momentum
        self.master = {n: p.detach().clone() for n, p in self.params.items()}
        self.velocity = {n: torch.zeros_like(p) for n, p in self.master.items()} if self.mu else {}

    def start(self, masks: MaskSet, fresh: bool) -> None:
        super().start(masks, fresh)
        if fresh:
            for name, p in self.params.items():
                self.master[name].copy_(p.detach())

    def pseudo_gradients(self, masks: MaskSet) -> dict[str, Tensor]:
        """Δ_r = θ_master − θ_r, zero at pruned coordinates (§1f pitfall 1)."""
        out = {}
        for name, p in self.params.items():
            delta = self.master[name] - p.detach()
            if name in masks.masks:
                delta.mul_(masks.multiplier(name))
            out[name] = delta
        return out

    def apply(self, updates: dict[str, Tensor], masks: MaskSet, lr: float) -> None:
        """θ_master ← θ_master − lr·(u + μ v) with v ← μ v + u (PyTorch Nesterov), masks
        re-applied, then θ_r ← θ_master."""
        for name, update in updates.items():
            step = update
            if self.mu:
                v = self.velocity[name].mul_(self.mu).add_(update)
                step = update + self.mu * v
            master = self.master[name].sub_(step, alpha=lr)
            if name in masks.masks:
                master.mul_(masks.multiplier(name))
            self.params[name].data.copy_(master)

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        tensors.update({f"master/{n}": t for n, t in self.master.items()})
        tensors.update({f"velocity/{n}": t for n, t in self.velocity.items()})
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        for group in ("master", "velocity"):
            for name, t in getattr(self, group).items():
                t.copy_(tensors[f"{group}/{name}"])


class DiLoCoSync(_OuterSync):
    """§1a: dense pseudo-gradient mean, outer Nesterov SGD."""

    def outer_step(self, masks: MaskSet) -> None:
        deltas = self.pseudo_gradients(masks)
        flat = torch.cat([d.reshape(-1).float() for d in deltas.values()])
        self._timed(self.comm.all_reduce_mean, flat)
        self._count(4.0 * flat.numel(), 4.0 * flat.numel() * (self.world - 1))
        means, offset = {}, 0
        for name, d in deltas.items():
            means[name] = flat[offset : offset + d.numel()].view_as(d).to(d.dtype)
            offset += d.numel()
        self.apply(means, masks, self.lr)


class SparseLoCoSync(_OuterSync):
    """§1b: EF + chunked top-k + quantization, all-gather, contributor mean, SGD lr 1."""

    def __init__(self, comm: Communicator, cfg: CommConfig, model: nn.Module, total_steps: int):
        super().__init__(comm, cfg, model, total_steps)
        self.compressor = SparseLoCoCompressor(topk=cfg.topk, chunk=cfg.chunk, bits=cfg.bits)
        self.ef = {n: torch.zeros_like(p) for n, p in self.master.items()}

    def compress(self, masks: MaskSet) -> tuple[list[WirePayload], int]:
        """Fold Δ_r into the EF, compress it, keep the residual; (payloads, their nbytes)."""
        payloads = []
        for name, delta in self.pseudo_gradients(masks).items():
            e = ef_update(self.ef[name], delta, self.cfg.ef_decay, self.lr)
            payload, sent = self.compressor.compress(e)
            ef_subtract(e, sent)
            if name in masks.masks:
                e.mul_(masks.multiplier(name))  # nothing pruned lingers to be sent later
            payloads.append(payload)
        return payloads, sum(p.nbytes for p in payloads)

    def outer_step(self, masks: MaskSet) -> None:
        payloads, nbytes = self.compress(masks)
        gathered = self._timed(self.comm.all_gather_bytes, frame(payloads))
        per_worker = [unframe(buf) for buf in gathered]
        received = sum(p.nbytes for r, ps in enumerate(per_worker) if r != self.rank for p in ps)
        self._count(float(nbytes), float(received))
        updates = {}
        for i, (name, p) in enumerate(self.params.items()):
            mean = aggregate([ps[i] for ps in per_worker], self.cfg.sparse_agg)
            updates[name] = mean.view_as(p).to(p.dtype)
        self.apply(updates, masks, 1.0)  # α already went into the EF (§1b)

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        tensors.update({f"ef/{n}": t for n, t in self.ef.items()})
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        for name, t in self.ef.items():
            t.copy_(tensors[f"ef/{name}"])


def frame(payloads: list[WirePayload]) -> Tensor:
    """One uint8 buffer: the payload count and lengths (int64), then each payload's bytes."""
    bufs = [p.to_bytes() for p in payloads]
    head = torch.tensor([len(bufs)] + [b.numel() for b in bufs], dtype=torch.int64)
    return torch.cat([head.view(torch.uint8)] + bufs)


def unframe(buf: Tensor) -> list[WirePayload]:
    """Inverse of :func:`frame`."""
    count = int(buf[:8].view(torch.int64).item())
    lengths = buf[8 : 8 * (count + 1)].view(torch.int64).tolist()
    out, pos = [], 8 * (count + 1)
    for n in lengths:
        out.append(WirePayload.from_bytes(buf[pos : pos + n].clone()))  # aligned views
        pos += n
    return out


STRATEGIES: dict[str, type[Sync]] = {
    "ddp": DDPSync,
    "diloco": DiLoCoSync,
    "sparseloco": SparseLoCoSync,
}


def build_sync(comm: Communicator, cfg: CommConfig, model: nn.Module, total_steps: int) -> Sync:
    """The :class:`Sync` that ``cfg.strategy`` names, for ``model`` on ``comm``."""
    return STRATEGIES[cfg.strategy](comm, cfg, model, total_steps)
