"""Post-training pruning as sweep methods: ``oneshot-magnitude``, ``wanda``, ``sparsegpt``.

Each prunes the trial's starting weights (``init.from``, or an ``hf-causal-lm`` model
folder) once, before the first step, from a few calibration sequences of the task's train
split, block by block in order (oneshot.py: Wanda, Sun et al. 2023; SparseGPT, Frantar &
Alistarh 2023; ``prune.refine: dsnot`` adds DSnoT's training-free refinement, Zhang et al.
2023). ``prune.pattern`` is ``unstructured`` (``prune.sparsity`` of every pruned layer) or
N:M (``2:4``, ``4:8``: N kept of every M inputs; ``prune.sparsity`` then stays 0 or is
1 - N/M). The masks then hold while ``train.steps`` fine-tune (0: none).

Knobs: ``prune.calibration.{samples, seq_len, seed}`` (``seq_len`` 0: the model's
``model.context``), ``prune.sparsegpt.{block, damp, mask}``, ``prune.dsnot.{cycles,
threshold}``. DSnoT refines the mask of weights it does not change (oneshot-magnitude,
wanda); SparseGPT updates the weights it keeps, so ``prune.refine: dsnot`` with it is
refused. The calibration's identity (a hash of its tokens, how many sequences of how many
tokens) is reported with the trial's metrics (``calib/*``), so two numbers from different
calibrations are never compared unknowingly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from spx.errors import ConfigError
from spx.kernels.nm import parse_nm
from spx.workers.calibration import is_linear, linear_weight
from spx.workers.knobs import FieldError, MethodKnobs, Node, PruneSettings, TrialView, read_knobs
from spx.workers.masks import prunable_weights
from spx.workers.oneshot import Calibration, Recipe, calibration_identity, prune_model
from spx.workers.pruner import Pruner
from spx.workers.schedules import Constant, Schedule


class CalibrationKnobs(Node):
    samples: int = Field(32, ge=1, le=65536, description="calibration sequences")
    seq_len: int = Field(0, ge=0, le=65536, description="tokens each; 0: model.context")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="which train windows are drawn")


class SparseGPTKnobs(Node):
    block: int = Field(128, ge=1, le=65536, description="columns per lazy update block")
    damp: float = Field(0.01, gt=0, le=1, description="dampening, a fraction of mean diag(H)")
    mask: Literal["row", "block"] = Field(
        "block", description="block: one threshold per block (the paper's); row: per row"
    )


class DSnoTKnobs(Node):
    cycles: int = Field(50, ge=1, le=100_000, description="prune-and-grow swaps per row")
    threshold: float = Field(
        0.1, ge=0, le=1e6, description="rows with a smaller expected error are left alone"
    )


class PostTrainingKnobs(MethodKnobs):
    pattern: str = Field("unstructured", description="unstructured, or N:M such as 2:4")
    refine: Literal["none", "dsnot"] = Field("none", description="dsnot: refine each mask")
    calibration: CalibrationKnobs = Field(
        CalibrationKnobs(), description="post-training: the calibration sequences"
    )
    sparsegpt: SparseGPTKnobs = Field(SparseGPTKnobs(), description="sparsegpt: its solver")
    dsnot: DSnoTKnobs = Field(DSnoTKnobs(), description="prune.refine dsnot: its budget")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, pattern: str) -> str:
        if pattern != "unstructured":
            parse_nm(pattern)  # ValueError names what is wrong
        return pattern

    def nm(self) -> tuple[int, int] | None:
        return None if self.pattern == "unstructured" else parse_nm(self.pattern)


class PostTraining(Pruner):
    """The shared machinery; a subclass names the one-shot rule (``rule``)."""

    rule: ClassVar[Literal["magnitude", "wanda", "sparsegpt"]]
    needs_gradients = False
    follows_schedule = False
    masks_at_step0 = True
    calibrates = True
    reports = ("calib/samples", "calib/seq_len", "calib/digest")
    example: ClassVar[dict[str, Any]] = {"prune.sparsity": 0.5, "prune.calibration.samples": 4}
    Knobs = PostTrainingKnobs
    knobs: PostTrainingKnobs

    def __init__(self, cfg: PruneSettings, model: nn.Module, steps: int, seed: int = 0):
        super().__init__(cfg, model, steps, seed)
        self.calibration: Calibration | None = None
        self._announce = False

    @classmethod
    def check(cls, cfg: TrialView) -> None:
        knobs = read_knobs(cls.Knobs, cfg.prune)
        if cls.rule == "sparsegpt" and knobs.refine == "dsnot":
            raise FieldError(
                "DSnoT refines the mask of unchanged weights; sparsegpt updates the weights "
                "it keeps (use wanda or oneshot-magnitude with dsnot)",
                "prune.refine",
                "dsnot",
            )
        nm = knobs.nm()
        sparsity = cfg.prune.sparsity
        if nm is not None and sparsity not in (0.0, 1 - nm[0] / nm[1]):
            raise FieldError(
                f"N:M sets the sparsity (1 - N/M = {1 - nm[0] / nm[1]:g}); "
                "leave prune.sparsity at 0",
                "prune.sparsity",
                sparsity,
            )

    @classmethod
    def validate(cls, cfg: TrialView, model: nn.Module) -> None:
        """N:M needs every pruned layer's input size to be a multiple of M."""
        nm = read_knobs(cls.Knobs, cfg.prune).nm()
        if nm is None:
            return
        wanted = set(prunable_weights(model, cfg.prune.embeddings))
        for name, layer in model.named_modules():
            if is_linear(layer) and f"{name}.weight" in wanted:
                inputs = linear_weight(layer).shape[1]
                if inputs % nm[1]:
                    raise ConfigError(
                        f"M must divide every pruned layer's input size, and {name} has "
                        f"{inputs} inputs",
                        field="prune.pattern",
                        value=f"{nm[0]}:{nm[1]}",
                    )

    def build_schedule(self, cfg: PruneSettings, steps: int) -> Schedule:
        nm = self.knobs.nm()
        return Constant(1 - nm[0] / nm[1] if nm else cfg.sparsity)

    def recipe(self) -> Recipe:
        k = self.knobs
        refine: Literal["dsnot"] | None = "dsnot" if k.refine == "dsnot" else None
        g = k.sparsegpt
        return Recipe(self.rule, self.cfg.sparsity, k.nm(), refine, k.dsnot.cycles,
                      k.dsnot.threshold, g.block, g.damp, g.mask)  # fmt: skip

    def calibrate(self, model: nn.Module, task: Any, cfg: Any, device: torch.device) -> None:
        """Prune ``model`` in place from ``prune.calibration.samples`` sequences of the
        task's train split and hold those masks."""
        k = self.knobs.calibration
        seq_len = k.seq_len or cfg.model.context
        if seq_len > cfg.model.context:
            raise FieldError(
                f"longer than model.context ({cfg.model.context})",
                "prune.calibration.seq_len",
                seq_len,
            )
        shaped = cfg.model_copy(
            update={
                "model": cfg.model.model_copy(update={"context": seq_len}),
                "train": cfg.train.model_copy(update={"batch_size": min(k.samples, 16)}),
            }
        )
        drawn = task.batches(shaped, torch.Generator().manual_seed(k.seed))
        batches = [x.to(device) for x in calibration_batches(drawn, k.samples)]
        self.prune_from(model, batches)

    @torch.no_grad()
    def prune_from(self, model: nn.Module, batches: list[Tensor]) -> None:
        """Prune ``model`` in place from ``batches`` (token ids) and hold those masks."""
        masks = prune_model(model, batches, self.recipe(), set(self.weights))
        for name, keep in masks.items():
            self.masks.masks[name] = keep.to(self.weights[name].device)
        self.masks.apply()
        self.calibration = calibration_identity(batches)
        self._announce = True

    def before_step(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        changed, self._announce = self._announce, False  # report the one mask change
        return changed

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> bool:
        self.mask_grads()
        return False

    def scores(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        raise NotImplementedError("post-training methods choose masks in calibrate()")

    def metrics(self) -> dict[str, float]:
        c = self.calibration
        if c is None:
            return {}
        return {
            "calib/samples": float(c.samples),
            "calib/seq_len": float(c.seq_len),
            "calib/digest": float(int(c.digest[:12], 16)),
        }

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_dict()
        c = self.calibration
        meta["calibration"] = None if c is None else [c.digest, c.samples, c.seq_len]
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        saved = meta.get("calibration")
        self.calibration = None if saved is None else Calibration(*saved)


class OneShotMagnitude(PostTraining):
    """One-shot magnitude pruning of trained weights, per layer (the baseline)."""

    name = "oneshot-magnitude"
    rule = "magnitude"


class Wanda(PostTraining):
    """Wanda: |W| x the input's norm, per output row (Sun et al. 2023)."""

    name = "wanda"
    rule = "wanda"


class SparseGPT(PostTraining):
    """SparseGPT: row-wise OBS with lazy block updates (Frantar & Alistarh 2023)."""

    name = "sparsegpt"
    rule = "sparsegpt"


def calibration_batches(batches: Iterator[tuple[Tensor, Tensor]], samples: int) -> list[Tensor]:
    """The first ``samples`` input sequences a task's batch iterator yields, in batches."""
    out: list[Tensor] = []
    have = 0
    while have < samples:
        x = next(batches)[0][: samples - have]
        out.append(x)
        have += x.shape[0]
    return out
