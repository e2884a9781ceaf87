"""How much memory one trial needs, from its config alone (arithmetic; nothing is built).

    bytes = P * (4 * (2 + k_opt + k_comm) + 5 * pruned) + 4 * B * A

P parameters in fp32 (4 bytes each) with their gradients (the 2), the optimizer's state
(k_opt: AdamW 2 moments, SGD 1 momentum buffer, 0 without momentum), for a multi-worker
trial a gradient bucket (k_comm 1, ddp) or the outer copy, outer momentum and error
feedback (k_comm 3, diloco and sparseloco), and when it prunes a boolean mask with its
cached 0/1 copy (5 bytes). A is the values one example's forward keeps for backward,
counted per task below (about twice what torch's saved-tensor hooks report for these
models: room for the gradients in flight and the allocator's slack), B is
``train.batch_size``. ``train.steps`` adds time, not memory: it is no part of it. The
estimate is meant as an honest upper end; spx refuses a trial whose estimate does not fit
the memory it checked (``--force`` runs it anyway). A custom task (``module:Class``) and
the DARTS supernets of ``nas.method: dass | darts`` have no estimate and are never refused.

>>> from spx.workers.config import TrialConfig
>>> e = estimate(TrialConfig.from_flat("digits-mlp", {"model.width": 128, "model.depth": 2}))
>>> e.params, e.state_bytes, e.activation_bytes
(26122, 417952, 152576)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spx.errors import ConfigError
from spx.workers.config import TrialConfig

if TYPE_CHECKING:
    from spx.platform.spec import SweepSpec

WORD = 4  # fp32
DIGITS_PIXELS, DIGITS_CLASSES, BYTES_VOCAB = 64, 10, 256


@dataclass(frozen=True)
class Estimate:
    params: int
    state_bytes: int
    """Weights, gradients, optimizer state, masks and multi-worker copies."""
    activation_bytes: int
    """One training batch's activations and their gradients."""
    keys: dict[str, int]
    """The trial keys the estimate grows with, and their values."""

    @property
    def total(self) -> int:
        return self.state_bytes + self.activation_bytes


def mlp_params(width: int, depth: int) -> int:
    """``depth`` hidden Linear layers of ``width`` on 64 pixels, then 10 classes."""
    inputs = DIGITS_PIXELS * width + width + (depth - 1) * (width * width + width)
    return inputs + width * DIGITS_CLASSES + DIGITS_CLASSES


def mlp_activations(width: int, depth: int) -> int:
    """Values kept per example: the input, each layer's Linear and ReLU outputs, the
    logits and their softmax."""
    return DIGITS_PIXELS + 2 * width * depth + 2 * DIGITS_CLASSES


def _cnn_blocks(width: int, depth: int) -> list[tuple[int, int, int]]:
    """(inputs, outputs, pixels out) of each residual block; the middle one halves the
    8x8 resolution and doubles the channels (workers/cnn.py)."""
    blocks, size, pixels = [], width, DIGITS_PIXELS
    for i in range(depth):
        down = depth > 1 and i == depth // 2
        out, pixels = (size * 2, pixels // 4) if down else (size, pixels)
        blocks.append((size, out, pixels))
        size = out
    return blocks


def cnn_params(width: int, depth: int) -> int:
    """A 3x3 stem with batch norm, blocks of two 3x3 convs (+ a 1x1 projection where the
    shape changes), each with batch norm, and a linear classifier."""
    total, last = 9 * width + 2 * width, width
    for cin, cout, _ in _cnn_blocks(width, depth):
        total += 9 * cin * cout + 9 * cout * cout + 4 * cout
        total += cin * cout + 2 * cout if cin != cout else 0
        last = cout
    return total + last * DIGITS_CLASSES + DIGITS_CLASSES


def cnn_activations(width: int, depth: int) -> int:
    """Values kept per example: the stem's conv, norm and ReLU outputs; in each block two
    convs, two norms, the sum and its ReLU plus the ReLU between (7 maps), and two more
    where a projection shortcut runs."""
    total = 3 * width * DIGITS_PIXELS
    for cin, cout, pixels in _cnn_blocks(width, depth):
        total += (7 + (2 if cin != cout else 0)) * cout * pixels
    return total + 2 * DIGITS_CLASSES


def gpt_params(width: int, depth: int, context: int) -> int:
    """Byte and position embeddings (the head is tied to the first), per block two layer
    norms, qkv, the projection and a 4x MLP (12 h^2 + 13 h), and the final norm."""
    return BYTES_VOCAB * width + context * width + depth * (12 * width**2 + 13 * width) + 2 * width


def gpt_activations(width: int, depth: int, context: int, heads: int) -> int:
    """Values kept per sequence. Per block, Korthikanti et al. 2022 ("Reducing Activation
    Recomputation in Large Transformer Models", sec. 4.1) count s*b*h*(34 + 5*a*s/h) bytes
    of 2-byte values: s*(17 h + 2.5 a s) values a sequence, rounded up here to
    s*(17 h + 3 a s) (CPU attention materialises the a*s*s scores). Plus the embeddings and
    the 256-way logits with their softmax and its gradient."""
    per_block = context * (17 * width + 3 * heads * context)
    return depth * per_block + context * (2 * width + 3 * BYTES_VOCAB)


def estimate(cfg: TrialConfig, workers: int = 1) -> Estimate | None:
    """Parameters and bytes one worker of this trial needs; None where spx has no formula."""
    if cfg.nas.method in ("dass", "darts"):
        return None
    m, batch = cfg.model, cfg.train.batch_size
    keys = {"model.width": m.width, "model.depth": m.depth, "train.batch_size": batch}
    if cfg.task == "digits-mlp":
        params, per_example = mlp_params(m.width, m.depth), mlp_activations(m.width, m.depth)
    elif cfg.task == "digits-cnn":
        params, per_example = cnn_params(m.width, m.depth), cnn_activations(m.width, m.depth)
    elif cfg.task == "code-gpt":
        params = gpt_params(m.width, m.depth, m.context)
        per_example = gpt_activations(m.width, m.depth, m.context, m.heads)
        keys |= {"model.context": m.context, "model.heads": m.heads}
    else:
        return None
    activations = WORD * batch * per_example
    return Estimate(params, params * _state_bytes(cfg, workers), activations, keys)


def _state_bytes(cfg: TrialConfig, workers: int) -> int:
    """Bytes per parameter beside the activations (see the module's docstring)."""
    optimizer = 2 if cfg.train.optimizer == "adamw" else int(cfg.train.momentum > 0)
    per_param = WORD * (2 + optimizer) + (5 if cfg.prune.method != "none" else 0)
    if workers > 1:
        per_param += WORD * (1 if cfg.comm.strategy == "ddp" else 3)
    return per_param


LOCAL = "of this machine's memory, which validate checks (launch checks the largest Ray node)"
RAY = "that the largest Ray node offers a task (its 'memory' resource)"


def check_launch(spec: SweepSpec, node_memory: float) -> None:
    """At launch: the largest trial against what the largest Ray node offers (a cluster
    whose nodes report no memory is not judged)."""
    from spx.platform.spec import resolve_trials  # late: spec imports the workers' registry

    if node_memory > 0:
        check_fits(spec, resolve_trials(spec), node_memory, RAY)


def local_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(
    spec: SweepSpec, configs: list[TrialConfig], limit: float, where: str, force: bool = False
) -> int | None:
    """Refuse the sweep when its largest trial's estimate exceeds ``limit`` bytes (``where``
    says whose memory that is) unless ``force``; return that estimate's total (None: no
    trial has an estimate)."""
    workers = spec.resources.workers_per_trial
    configs = [*configs, *_range_tops(spec)]
    found = [(e, c) for c in configs if (e := estimate(c, workers)) is not None]
    if not found:
        return None
    worst, cfg = max(found, key=lambda pair: pair[0].total)
    if force or worst.total <= limit:
        return worst.total
    heavy = "train.batch_size" if worst.activation_bytes > worst.state_bytes else "model.width"
    keys = ", ".join(f"{k}={v}" for k, v in worst.keys.items())
    masks = ", masks" if cfg.prune.method != "none" else ""
    raise ConfigError(
        f"a trial ({keys}) needs about {human_bytes(worst.total)}: "
        f"{human_bytes(worst.state_bytes)} for {worst.params:,} parameters (with gradients"
        f"{masks} and {cfg.train.optimizer} state) and "
        f"{human_bytes(worst.activation_bytes)} of activations per batch; that is more than "
        f"the {human_bytes(limit)} {where}. Lower those keys, or pass --force to run it anyway",
        field=_block(spec, heavy),
        value=worst.keys[heavy],
    )


def _range_tops(spec: SweepSpec) -> list[TrialConfig]:
    """A config at the top of each min/max range: an adaptive method's previewed draws may
    not reach it, and every estimate grows with the keys it reads."""
    tops = []
    for key, axis in spec.parameters.items():
        top = getattr(axis, "max", None)
        if top is not None:
            value = int(top) if getattr(axis, "int", False) else top
            tops.append(TrialConfig.from_flat(spec.task, {**spec.fixed, key: value}))
    return tops


def _block(spec: SweepSpec, key: str) -> str:
    if key in spec.parameters:
        return f"parameters.{key}"
    return f"fixed.{key}" if key in spec.fixed else key


def human_bytes(n: float) -> str:
    """``1.5 GB``-style text (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
