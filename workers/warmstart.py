"""``init.from``: a trial that starts from trained weights instead of a fresh init.

A sweep file names the source under ``init.from``: ``{sweep: NAME, trial: N}``,
``{sweep: NAME, trial: best}``, or a folder ``spx sweep export-model`` wrote. The platform
resolves it before any trial runs (``platform/lineage.py``) and fills in the rest of
``init.*``: the model folder the trial loads (``init.folder``), the source's sweep, trial
and config hash, and the sha256 of its weights. Those keys are the trial's lineage: they
are stored with its config and logged as its MLflow params.

A trial builds its model as usual (same seed, same random draws, so its data order is a
fresh trial's), then loads the folder's ``model.safetensors`` over it
(:func:`load_weights`): every tensor must be there with the same shape, and no other, else
the trial's architecture is not the source's. The loaded weights are the starting point of
every method.

Masks: an exported model holds exact zeros where its trial pruned. A method that prunes
starts from the masks ``weight != 0`` (:func:`keep_zeros`), so the source's pruned weights
stay pruned and the method only prunes further (to at least the source's sparsity), except
that a method that regrows by design (``regrows``: rigl, set, nm) may grow them back; a
one-shot method scores the loaded weights, in which those zeros score lowest. The dense
baseline (``none``) keeps no masks: it trains every weight, the zeros included.

>>> cfg = InitConfig.model_validate({"from": {"sweep": "pre", "trial": "best"}})
>>> cfg.source.sweep, cfg.source.trial, cfg.folder
('pre', 'best', None)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from spx.errors import ConfigError, TrialError
from spx.workers.knobs import FieldError, Node

if TYPE_CHECKING:
    from torch import nn

    from spx.workers.pruner import Pruner

WEIGHTS = "model.safetensors"
"""The weights file of a model folder (``spx sweep export-model`` writes it)."""
FIELD = "init.from"

Shapes = dict[str, tuple[int, ...]]


class InitSource(Node):
    """``init.from``: a finished trial of a sweep in the store, or an exported model folder."""

    sweep: str | None = Field(None, min_length=1, description="a sweep in the store")
    trial: int | Literal["best"] | None = Field(
        None,
        description="its trial number, or best: its best COMPLETED trial by its objective",
    )
    path: str | None = Field(
        None,
        min_length=1,
        description="a folder `spx sweep export-model` wrote (relative to the sweep file)",
    )

    @field_validator("trial", mode="before")
    @classmethod
    def _trial(cls, trial: Any) -> Any:
        if trial is None or trial == "best" or (type(trial) is int and trial >= 0):
            return trial
        raise ValueError("must be a trial number (0, 1, ...) or best")

    @model_validator(mode="after")
    def _one_source(self) -> InitSource:
        if self.path is not None and (self.sweep is not None or self.trial is not None):
            raise FieldError("name a model folder or a sweep's trial, not both", "path", self.path)
        if self.sweep is not None and self.trial is None:
            raise FieldError("give the sweep's trial too: a trial number or best", "trial")
        if self.trial is not None and self.sweep is None:
            raise FieldError("give the sweep the trial belongs to", "sweep", self.trial)
        return self

    @property
    def given(self) -> bool:
        return self.sweep is not None or self.path is not None

    def echo(self) -> Any:
        """What the sweep file said, for error messages."""
        return self.path if self.path is not None else {"sweep": self.sweep, "trial": self.trial}


class InitConfig(Node):
    """``init.*``: ``init.from`` is the sweep file's; spx sets the others when it resolves it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        serialize_by_alias=True,  # dotted keys say init.from.*, as the sweep file does
        validate_by_alias=True,
        validate_by_name=True,
    )

    source: InitSource = Field(InitSource(), alias="from")
    folder: str | None = Field(None, description="set by spx: the model folder the trial loads")
    sweep: str | None = Field(None, description="set by spx: the source trial's sweep")
    trial: int | None = Field(None, description="set by spx: the source trial's number")
    config_hash: str | None = Field(None, description="set by spx: sha256 of the source's config")
    sha256: str | None = Field(None, description="set by spx: sha256 of the weights loaded")

    RESOLVED: ClassVar[tuple[str, ...]] = ("folder", "sweep", "trial", "config_hash", "sha256")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_shapes(model: nn.Module) -> Shapes:
    """The shape of every tensor in ``model``'s state dict (meta tensors do)."""
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def file_shapes(path: Path) -> Shapes:
    """The shape of every tensor in a safetensors file, read from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {name: tuple(fh.get_slice(name).get_shape()) for name in fh.keys()}  # noqa: SIM118


def check_shapes(model: Shapes, source: Shapes, given: Any, field: str = FIELD) -> None:
    """ConfigError naming ``field`` (``init.from``) and the first tensor whose shape
    differs, or that only one side has: the source is not this trial's architecture."""
    for name, shape in model.items():
        if name not in source:
            reason = f"the source has no tensor {name} (this trial's model's is {list(shape)})"
        elif tuple(source[name]) != shape:
            reason = (
                f"tensor {name} is {list(source[name])} in the source but {list(shape)} in "
                "this trial's model"
            )
        else:
            continue
        raise ConfigError(f"not this trial's architecture: {reason}", field=field, value=given)
    extra = [name for name in source if name not in model]
    if extra:
        raise ConfigError(
            f"not this trial's architecture: the source has tensor {extra[0]} "
            f"(shape {list(source[extra[0]])}), which this trial's model lacks",
            field=field,
            value=given,
        )


def load_weights(init: InitConfig, model: nn.Module) -> None:
    """Load ``init.folder``'s weights into ``model`` (nothing without an ``init.from``);
    the file must be the one whose sha256 the platform recorded at launch."""
    if init.folder is None:
        return
    from safetensors.torch import load

    path = Path(init.folder) / WEIGHTS
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise TrialError(f"init.from: cannot read the weights at {path} ({exc})") from exc
    found = hashlib.sha256(blob).hexdigest()
    if init.sha256 is not None and found != init.sha256:
        raise TrialError(
            f"init.from: the weights at {path} changed since the sweep was launched "
            f"(sha256 {found[:12]}…, launched with {init.sha256[:12]}…)"
        )
    state = load(blob)
    check_shapes(model_shapes(model), {k: tuple(v.shape) for k, v in state.items()}, init.folder)
    model.load_state_dict(state)


def keep_zeros(init: InitConfig, pruner: Pruner) -> None:
    """Start a pruning method's masks at the loaded weights' nonzeros (module docstring)."""
    if init.folder is None or not pruner.prunes:
        return
    for name, weight in pruner.weights.items():
        pruner.masks.masks[name] = weight.detach() != 0
