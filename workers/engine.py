"""The engine a trial's inner steps run through: the loop's own (``engine: torch``) or
DeepSpeed's (``engine: deepspeed``).

The loop (``loop.py``) calls the same hooks, in the same order around the pruner's, for
both: the loss is computed through ``module``; ``backward(loss)``; the pruner's
``after_backward``; ``step()``; the pruner's ``after_step``; ``after_step()``. ``reload()``
follows weights that changed outside the engine (a restored checkpoint, rank 0's weights
at the start of a worker group) and ``close()`` ends the trial.

DeepSpeed runs ``deepspeed.initialize`` on the trial's own model and torch optimizer
(:func:`ds_config`: micro-batch ``train.batch_size``, no gradient accumulation, ZeRO stage
``deepspeed.zero_stage``), on its CPU accelerator: the loop builds and trains every model on
the CPU, so ``DS_ACCELERATOR`` defaults to ``cpu`` (a CUDA trial needs device placement in
the loop and the tasks first). It needs ``torch.distributed``: a multi-worker trial's
group, else a one-process gloo group it starts and ends itself.

Pruning under ZeRO. Stages 1 and 2 keep an fp32 master partition of the weights (and its
optimizer state) apart from the model's parameters and copy it back after each step, and
stage 2 reduces gradients into its own buffers during backward; so masking the weights and
their ``.grad`` (what the pruner does) is not enough. Under ZeRO the engine also masks each
prunable weight's gradient where autograd makes it (a tensor hook, before DeepSpeed reduces
it) and, after every step, the master partition (and its optimizer state after a mask
update): pruned weights stay exactly zero and are never revived. A method that reads or
writes ``.grad`` or the optimizer state itself (rigl, set, nm, lottery, oto, nodes, snip),
which ZeRO has partitioned away, says so in its ``zero_stages`` flag, and the trial config
(``config.check_engine``) runs it at stage 0 only.

Checkpoints hold the same torch optimizer's state dict: per weight at stage 0, this rank's
flat partition under ZeRO (restored into the same partition layout, so a trial resumes under
its own engine, stage and worker count, which its config fixes anyway); ``reload()`` then
copies the restored weights into the master partition.

Worker groups: DeepSpeed's engine averages the gradients over the group itself, so it
stands in for ``comm.strategy: ddp`` (whose own mean is then skipped; its ``comm/*``
metering counts DeepSpeed's mean as the same dense payload). DiLoCo and SparseLoCo train
each worker alone between outer steps, which DeepSpeed's every-step reduction would break:
the trial config refuses them.

>>> cfg = TrialConfig.from_flat("digits-mlp", {})
>>> ds_config(cfg)["zero_optimization"], type(build_engine(cfg, None, None, None)).__name__
({'stage': 0}, 'Engine')
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spx.errors import TrialError
from spx.workers.config import TrialConfig
from spx.workers.masks import MaskSet


class Engine:
    """``engine: torch``: plain autograd and the optimizer's own step."""

    reduces_gradients: ClassVar[bool] = False  # True: averages gradients over a worker group

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.module: Any = model  # what the loss is computed through
        self.optimizer = optimizer

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()

    def after_step(self) -> None:
        """After the pruner re-applied its masks to the model's weights."""

    def reload(self) -> None:
        """The model's weights changed outside the engine."""

    def close(self) -> None:
        """The trial is over."""


class DeepSpeedEngine(Engine):
    """``engine: deepspeed``: DeepSpeed's engine, ZeRO stage 0-2 (module docstring)."""

    reduces_gradients = True

    def __init__(
        self, cfg: TrialConfig, model: nn.Module, optimizer: torch.optim.Optimizer, masks: MaskSet
    ):
        super().__init__(model, optimizer)
        self.masks, self.zero = masks, cfg.deepspeed.zero_stage > 0
        self.owns_group = _join_alone()
        try:
            self.engine = _initialize(cfg, model, optimizer)
        except BaseException:
            self._leave()
            raise
        self.module = self.engine
        self.hooks: list[Any] = []
        if self.zero:  # masked before DeepSpeed reduces them into its own buffers
            for name, weight in masks.weights.items():
                self.hooks.append(weight.register_hook(partial(self._masked_grad, name)))
        self._keeps: list[Tensor] = []
        self._keeps_of: list[Tensor] = []  # the mask objects the keeps were built from

    def _masked_grad(self, name: str, grad: Tensor) -> Tensor:
        return grad * self.masks.multiplier(name)

    def backward(self, loss: Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()

    @torch.no_grad()
    def after_step(self) -> None:
        if not self.zero:
            return  # stage 0: the optimizer steps the model's own weights
        changed = self._refresh_keeps()
        for flat, keep in zip(self._masters(), self._keeps, strict=True):
            flat.mul_(keep)
            if changed:  # like mask_optimizer_state: pruned weights keep no moments
                for value in self.optimizer.state.get(flat, {}).values():
                    if torch.is_tensor(value) and value.shape == flat.shape:
                        value.mul_(keep)

    def reload(self) -> None:
        if self.zero:
            self.engine.optimizer.refresh_fp32_params()  # master partition <- the weights

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.engine.destroy()
        self._leave()

    def _leave(self) -> None:
        if not self.owns_group:
            return
        self.owns_group = False
        try:  # DeepSpeed's own call also drops the groups it cached from this one
            from deepspeed import comm
        except ImportError:
            torch.distributed.destroy_process_group()
            return
        if comm.is_initialized():
            comm.destroy_process_group()
        else:
            torch.distributed.destroy_process_group()

    def _masters(self) -> list[Tensor]:
        """This rank's fp32 master partition of each param group (flat)."""
        return self.engine.optimizer.single_partition_of_fp32_groups

    def _refresh_keeps(self) -> bool:
        """Lay the masks out like the master partitions; True when they changed (a mask is
        replaced, never edited: MaskSet's contract)."""
        current = list(self.masks.masks.values())
        if len(current) == len(self._keeps_of) and all(
            a is b for a, b in zip(current, self._keeps_of, strict=True)
        ):
            return False
        self._keeps = [torch.ones_like(flat) for flat in self._masters()]
        for name, weight in self.masks.weights.items():
            # DeepSpeed's link from a weight to its slice of this rank's partition (the one
            # its safe_get/set_full_fp32_param use); None where another rank holds it.
            fragment = getattr(weight, "_hp_mapping", None)
            if fragment is None:
                continue
            lp, hp = fragment.lp_fragment_address, fragment.get_hp_fragment_address()
            mult = self.masks.multiplier(name).flatten().narrow(0, lp.start, lp.numel)
            self._keeps[fragment.param_group_index].narrow(0, hp.start, hp.numel).copy_(mult)
        self._keeps_of = current
        return True


def build_engine(
    cfg: TrialConfig, model: nn.Module, optimizer: torch.optim.Optimizer, masks: MaskSet
) -> Engine:
    """The engine ``cfg.engine`` names, for the trial's model, optimizer and masks."""
    if cfg.engine == "deepspeed":
        return DeepSpeedEngine(cfg, model, optimizer, masks)
    return Engine(model, optimizer)


def ds_config(cfg: TrialConfig) -> dict[str, Any]:
    """DeepSpeed's config for a trial: one micro-batch of ``train.batch_size`` per step."""
    return {
        "train_micro_batch_size_per_gpu": cfg.train.batch_size,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        # ZeRO vets Adam-likes only; SGD is as elementwise, so as safe on a partition.
        "zero_allow_untested_optimizer": True,
    }


def _join_alone() -> bool:
    """A one-process gloo group for DeepSpeed unless a worker group exists; True when
    this call started it (the engine ends it)."""
    import torch.distributed as dist

    from spx.workers.distributed import free_port

    os.environ.setdefault("LOCAL_RANK", "0")  # DeepSpeed's engine reads it
    if dist.is_initialized():
        if dist.get_backend() != "gloo":
            raise TrialError(
                f"engine deepspeed runs on DeepSpeed's CPU accelerator here, but this worker "
                f"group runs {dist.get_backend()}"
            )
        return False
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    return True


def _initialize(cfg: TrialConfig, model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed picks one
    try:
        import deepspeed
        from deepspeed.accelerator import get_accelerator
    except ImportError as exc:
        raise TrialError(f"engine deepspeed: cannot import deepspeed ({exc})") from None
    if get_accelerator().device_name() != "cpu":
        raise TrialError(
            f"engine deepspeed: DeepSpeed chose its {get_accelerator().device_name()} "
            "accelerator, but the loop trains on the CPU; set DS_ACCELERATOR=cpu"
        )
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds_config(cfg), dist_init_required=False
    )
    return engine
