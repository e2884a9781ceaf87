"""The shared pruning machinery every sparsity method builds on.

A method is a subclass of :class:`Pruner` that overrides one scoring hook, ``scores``
(higher = more worth keeping; ``grad`` is this step's dense gradient). The base turns
scores into exact per-layer masks at the sparsity its schedule asks for (layer densities
from ``prune.distribution``), keeps masks monotone, and holds pruned weights and their
optimizer state at zero. A method also owns, in its class:

- ``Knobs``: its own ``prune.*`` keys, a :class:`~spx.workers.knobs.MethodKnobs` model
  (``self.knobs`` holds the trial's values);
- ``check(cfg)``: its cross-field rules, run when a trial config of this method is built
  (raise :class:`~spx.workers.knobs.FieldError` naming the full key), and
  ``validate(cfg, model)``: rules that need the model (on meta tensors);
- capability flags, which the rest of the code reads instead of lists of names:

  ``prunes``: False for the dense baseline. ``regrows``: masks may regain weights by
  design (rigl, set, nm). ``compacts``: the trained model can be cut to a smaller dense
  one (``compact.py``): the loop reports ``compact/*`` and export writes the compact model.
  ``needs_gradients`` (the default): its scores read this step's gradient, so its masks
  update after the backward pass; False: they update before the forward pass, on the
  weights alone, and the step already trains under the new masks (the order of Zhu &
  Gupta's gradual pruning). ``follows_schedule``: its sparsity follows ``prune.schedule.*``
  (else it holds ``prune.sparsity`` from step 0, or builds its own schedule).
  ``masks_at_step0``: it draws its masks at init, before the first forward pass, whatever
  the schedule (a method that needs gradients later, like RigL, too). ``zero_stages``: the
  DeepSpeed ZeRO stages it runs under (stage 0 only for a method that reads or writes
  ``.grad`` or optimizer state itself: ZeRO 1/2 move both into their own partitions).
  ``calibrates``: it prunes the trial's starting (trained) weights once, before the
  first step, from calibration data of the task (``calibrate``; oneshot_methods.py).
  ``example``: keys of a small trial it runs (the conformance suite trains each registered
  method with them).

The one training loop calls the same hooks for every method:

- ``before_step(step, optimizer) -> bool``: before the forward pass; the default updates
  the masks of a method that needs no gradient when the schedule says so, and draws a
  ``masks_at_step0`` method's masks at step 0.
- ``after_backward(step, optimizer) -> bool``: this step's dense gradient is in ``.grad``;
  the default updates the masks of a method that needs gradients here when the schedule
  says so (``scores`` sees that gradient), then masks the gradient, so the optimizer step
  runs under the new masks. Both return True when masks changed (the loop then reports the
  realised schedule).
- ``after_step()``: after ``optimizer.step()``; the default re-applies the masks.
- ``total_steps`` and ``position(step)``: how many steps the trial trains and where each
  sits in the LR schedule (a lottery trains its rounds past ``train.steps``).
- ``state_dict()`` / ``load_state_dict()``: everything to resume exactly (masks, the mask
  RNG stream, method state), as tensors plus a JSON-safe dict.

``step`` counts optimizer steps already taken, so a mask update at step 0 is "at init",
on the first batch's gradient.

>>> import torch
>>> from spx.workers.knobs import PruneSettings
>>> class Largest(Pruner):
...     name = "largest"
...     def scores(self, weight, grad):
...         return weight.detach().abs()
>>> model = torch.nn.Linear(4, 2, bias=False)
>>> cfg = PruneSettings(sparsity=0.5, schedule={"kind": "one-shot", "start": 0.0, "end": 0.0})
>>> pruner, sgd = Largest(cfg, model, steps=10), torch.optim.SGD(model.parameters(), lr=0.1)
>>> pruner.before_step(0, sgd), pruner.after_backward(0, sgd), pruner.masks.nnz()
(False, True, 4)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spx.workers.allocation import keep_counts
from spx.workers.knobs import MethodKnobs, PruneSettings, TrialView, read_knobs
from spx.workers.masks import MaskSet, keep_top, prunable_weights
from spx.workers.schedules import Constant, Schedule, build_schedule

MASK_STREAM = 0x6D61736B  # offsets the mask RNG's seed from the weight-init and data seeds


class Pruner:
    """Base class of every sparsity method (see the module docstring for the hooks)."""

    name: ClassVar[str]
    prunes: ClassVar[bool] = True
    regrows: ClassVar[bool] = False
    compacts: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = True
    follows_schedule: ClassVar[bool] = True
    masks_at_step0: ClassVar[bool] = False
    calibrates: ClassVar[bool] = False
    """Post-training: ``calibrate`` prunes the starting weights once, before step 0."""
    reports: ClassVar[tuple[str, ...]] = ()
    """The names of the metrics ``metrics()`` adds to the trial's reports."""
    zero_stages: ClassVar[tuple[int, ...]] = (0,)
    Knobs: ClassVar[type[MethodKnobs]] = MethodKnobs
    example: ClassVar[dict[str, Any]] = {"prune.sparsity": 0.5}
    knobs: MethodKnobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        self.cfg = cfg
        self.knobs = read_knobs(self.Knobs, cfg)
        self.steps = steps
        self.masks = MaskSet(prunable_weights(model, embeddings=cfg.embeddings))
        self.exempt = self.dense_layers(model)
        self.schedule = self.build_schedule(cfg, steps)
        # Its own stream: random masks never shift weight init or data order across methods.
        self.generator = torch.Generator().manual_seed(seed + MASK_STREAM)

    @property
    def weights(self) -> dict[str, nn.Parameter]:
        return self.masks.weights

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring (``spx sweep schema`` shows it)."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]

    @classmethod
    def traits(cls) -> str:
        """Its flags in words (``spx sweep schema`` shows them).

        >>> Pruner.traits()
        'on prune.schedule, scores gradients, ZeRO stage 0 only'
        """
        if not cls.prunes:
            return "dense"
        words = {
            "on prune.schedule": cls.follows_schedule,
            "masks at init": cls.masks_at_step0,
            "scores gradients": cls.needs_gradients,
            "regrows": cls.regrows,
            "compacts": cls.compacts,
            f"ZeRO stage {'/'.join(map(str, cls.zero_stages))} only": cls.zero_stages != (0, 1, 2),
        }
        return ", ".join(word for word, applies in words.items() if applies)

    # -- what a method overrides --------------------------------------------------------

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        """How much each weight is worth keeping (the one scoring hook)."""
        raise NotImplementedError

    def build_schedule(self, cfg: PruneSettings, steps: int) -> Schedule:
        if self.follows_schedule:
            return build_schedule(cfg.schedule, cfg.sparsity, steps)
        return Constant(cfg.sparsity)

    def dense_layers(self, model: nn.Module) -> set[str]:
        """Prunable weights this method leaves dense (outside the sparsity target)."""
        return set()

    @classmethod
    def check(cls, cfg: TrialView) -> None:
        """Raise FieldError (naming the full key, e.g. ``prune.rounds``) for a trial config
        this method cannot run; it runs for this method's trials only."""

    @classmethod
    def validate(cls, cfg: TrialView, model: nn.Module) -> None:
        """Raise ConfigError for a config this method cannot run on ``model`` (meta tensors)."""

    @property
    def total_steps(self) -> int:
        return self.steps

    def position(self, step: int) -> int:
        return step

    # -- loop hooks ---------------------------------------------------------------------

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        """Before the forward pass: the update of a method that needs no gradient, or a
        ``masks_at_step0`` method's draw at step 0; True when masks changed."""
        if self.scores_after_backward(step):
            return False
        return self.update_masks(step, optimizer)

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        """This step's gradient is in ``.grad``: a method that needs it updates its masks
        now if the schedule says so; then the gradient is masked. True when masks changed."""
        changed = self.scores_after_backward(step) and self.update_masks(step, optimizer)
        self.mask_grads()
        return changed

    def scores_after_backward(self, step: int) -> bool:
        """Whether a mask update at ``step`` waits for this step's gradient."""
        return self.needs_gradients and not (self.masks_at_step0 and step == 0)

    def calibrate(self, model: nn.Module, task: Any, cfg: Any, device: torch.device) -> None:
        """A ``calibrates`` method's one-shot pruning of the starting weights."""

    def metrics(self) -> dict[str, float]:
        """What the method reports beside the loop's metrics (none by default)."""
        return {}

    def after_step(self) -> None:
        if self.prunes:
            self.masks.apply()

    def update_masks(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        """Masks at the schedule's sparsity when it says so; True when they were updated."""
        if not self.prunes or not self.schedule.should_update(step):
            return False
        self.prune_to(self.schedule.sparsity_at(step))
        self.masks.apply()
        mask_optimizer_state(optimizer, self.weights, self.masks.multipliers())
        return True

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Pruned weights get no gradient, so optimizer moments stay zero for them."""
        if not self.prunes:
            return
        for name, weight in self.weights.items():
            if weight.grad is not None:
                weight.grad.mul_(self.masks.multiplier(name))

    # -- shared mask making -------------------------------------------------------------

    @torch.no_grad()
    def prune_to(self, target: float) -> None:
        """Masks at ``target`` sparsity; pruned weights score below all others (monotone)."""
        scores: dict[str, Tensor] = {}
        for name, weight in self.weights.items():
            if name not in self.exempt:
                score = self.scores(weight, weight.grad).float()
                scores[name] = score.masked_fill(~self.masks.masks[name], -math.inf)
        keep = self.keep_counts(scores, target)
        nnz = self.masks.layer_nnz()
        for name, score in scores.items():
            self.masks.masks[name] = self.select(score, min(keep[name], nnz[name]))

    def keep_counts(self, scores: dict[str, Tensor], target: float) -> dict[str, int]:
        """How many weights each layer keeps at ``target`` (layer-wise: the distribution)."""
        shapes = {name: tuple(s.shape) for name, s in scores.items()}
        return keep_counts(shapes, target, self.cfg.distribution)

    def select(self, scores: Tensor, keep: int) -> Tensor:
        """The mask of one layer keeping ``keep`` weights by ``scores``."""
        return keep_top(scores, keep)

    def min_layer(self) -> int:
        """N_min of the minimum-weights-per-layer rule: ``prune.min_layer_fraction`` of all
        prunable weights."""
        return math.floor(self.masks.numel() * self.cfg.min_layer_fraction)

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"mask/{name}": mask for name, mask in self.masks.masks.items()}
        tensors["rng/mask"] = self.generator.get_state()
        return tensors, {}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        for name in self.masks.masks:
            self.masks.masks[name] = tensors[f"mask/{name}"].bool()
        self.generator.set_state(tensors["rng/mask"])


@torch.no_grad()
def mask_optimizer_state(
    optimizer: torch.optim.Optimizer, weights: dict[str, nn.Parameter], keep: dict[str, Tensor]
) -> None:
    """Zero every per-weight optimizer slot (momentum, Adam moments) where ``keep`` is False,
    so a pruned or newly grown weight has no history to move with."""
    for name, weight in weights.items():
        state = optimizer.state.get(weight, {})
        for value in state.values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                value.mul_(keep[name])
