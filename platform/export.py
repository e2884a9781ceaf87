"""A trial's trained model, out of the platform: ``spx sweep export-model``.

The model is rebuilt from the trial's config (and, for a DASS/DARTS trial, the genotype
its search derived), loaded from the trial's last checkpoint, and its masks applied. A
trial whose method removes whole units (``oto``, ``nodes``, ``channel``) is exported as
its *compact* subnetwork: physically smaller layers with the same outputs. The folder
holds ``model.safetensors`` (weights only: nothing is unpickled to read it back) and
``spx-model.json`` (the trial config, the genotype, the kept units of each group, and
parameter/FLOP counts), which :func:`load_model` rebuilds the module from.

Loading unpickles nothing, but the manifest names the task whose model class is built: a
registered task (``digits-mlp``, ``digits-cnn``, ``code-gpt``) loads from data alone, while
a custom task (``module:Class``) would import that module, so running whatever code a model
folder (or the current directory) carries. That takes ``trust_code=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from spx.errors import ConfigError, NotFoundError
from spx.platform import paths
from spx.platform.settings import Settings
from spx.platform.store import SweepRow, TrialRow
from spx.workers import checkpoint
from spx.workers.config import TrialConfig
from spx.workers.methods import method_class
from spx.workers.tasks import TASKS, build_task
from spx.workers.warmstart import WEIGHTS

MANIFEST = "spx-model.json"


@dataclass
class Exported:
    folder: Path
    manifest: dict[str, Any]


def export_trial(
    settings: Settings,
    sweep: SweepRow,
    trial: TrialRow,
    output: Path,
    force: bool = False,
    compact: bool = True,
) -> Exported:
    """Write trial ``trial``'s model (masked or compact) to the folder ``output``; a folder
    that already holds an exported model is overwritten only with ``force``. ``compact``
    False keeps the masked full model even for a method that compacts (``init.from``
    loads it into a trial of the same architecture)."""
    _check_output(output, force)
    folder = paths.trial_folder(paths.sweep_folder(settings, sweep), trial.number)
    loaded = checkpoint.load(folder / "checkpoint")
    if loaded is None:
        raise NotFoundError(
            f"trial {trial.number} of sweep {sweep.name!r} has no checkpoint under {folder}"
        )
    tensors, _ = loaded
    cfg = TrialConfig.from_flat(sweep.task, dict(trial.params))
    genotype = _genotype(folder) if cfg.nas.method in ("dass", "darts") else None
    if genotype is not None:  # only the derived cell travels: the search's record stays
        genotype = {"normal": genotype["normal"]}
    model = build_model(cfg, genotype, settings.home / "data")
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(tensors[f"model/{name}"])
        for name, buf in model.named_buffers():
            buf.copy_(tensors[f"buffer/{name}"])
        for key, mask in tensors.items():
            if key.startswith("pruner/mask/"):
                model.get_parameter(key.removeprefix("pruner/mask/")).mul_(mask.to(torch.bool))
    model.eval()
    manifest: dict[str, Any] = {
        "sweep": sweep.name,
        "trial": trial.number,
        "task": sweep.task,
        "config": cfg.model_dump(mode="json"),
        "genotype": genotype,
        "metrics": trial.metrics or {},
    }
    example = build_task(cfg.task, settings.home / "data").example_input(cfg)
    full_counts = _counts(model, example)
    manifest["full"] = full_counts
    if compact and method_class(cfg.prune.method).compacts:
        from spx.workers.compact import compact as compacted
        from spx.workers.compact import kept_units

        kept = kept_units(model)  # a dropped unit's slices are all zero in the checkpoint
        model, _ = compacted(model, example, kept)
        manifest["kept"] = {name: keep.tolist() for name, keep in kept.items()}
        manifest["compact"] = _counts(model, example)
    _write(output, model, manifest)
    return Exported(output, manifest)


def build_model(cfg: TrialConfig, genotype: Any, data_dir: Path) -> nn.Module:
    if genotype is not None:
        from spx.search.cells import DerivedNet, Genotype

        torch.manual_seed(cfg.train.seed)
        return DerivedNet(Genotype.from_json(genotype), cfg.nas.cells, cfg.nas.channels)
    torch.manual_seed(cfg.train.seed)
    return build_task(cfg.task, data_dir).build_model(cfg)


def load_model(folder: Path, trust_code: bool = False) -> nn.Module:
    """The module ``export_trial`` wrote to ``folder``, rebuilt without unpickling.

    Only a registered task's model is built unless ``trust_code`` is True: a custom task
    (``module:Class``) imports that module, which runs its code. Example:
    ``load_model(Path("model/"))(torch.zeros(1, 64))``
    """
    manifest = _manifest(Path(folder))
    task = manifest["config"].get("task")
    if not (trust_code or (isinstance(task, str) and task in TASKS)):
        raise ConfigError(
            f"the model in {folder} names a task that is not registered; building it would "
            "import and run that module's code: pass trust_code=True only if you trust it",
            field="task",
            value=task,
        )
    cfg = TrialConfig.model_validate(manifest["config"])
    model = build_model(cfg, manifest.get("genotype"), Path(".spx/data"))
    if "kept" in manifest:
        from spx.workers.compact import compact

        kept = {name: torch.tensor(keep) for name, keep in manifest["kept"].items()}
        _zero_dropped(model, kept)  # the same shape of zeros as the trained model had
        example = build_task(cfg.task).example_input(cfg)
        model, _ = compact(model, example, kept)
    model.load_state_dict(load_file(str(Path(folder) / WEIGHTS)))
    return model.eval()


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"no exported model at {folder}: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"is not valid JSON ({exc})", field=str(path)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise ConfigError("is not an spx model manifest (no config)", field=str(path))
    return manifest


def _check_output(output: Path, force: bool) -> None:
    """A file is no folder to export into; an earlier export is replaced only with force."""
    if output.exists() and not output.is_dir():
        raise ConfigError(
            "is a file; export-model writes a folder", field="--output", value=str(output)
        )
    held = [name for name in (MANIFEST, WEIGHTS) if os.path.lexists(output / name)]
    if held and not force:
        raise ConfigError(
            f"already holds an exported model ({held[0]}); pass --force to overwrite it",
            field="--output",
            value=str(output),
        )


def _zero_dropped(model: nn.Module, kept: dict[str, torch.Tensor]) -> None:
    """Zero every slice of the dropped units, so compaction cuts exactly what it cut when
    the model was exported (a unit it could not cut stays, as it did then)."""
    from spx.workers import zig

    space = [g for g in zig.removable(model) if g.name in kept]
    tensors = {s.name: zig.resolve(model, s.name) for g in space for s in g.slices}
    keep = [kept[g.name].bool() for g in space]
    with torch.no_grad():
        for name, factor in zig.multipliers(space, keep, tensors).items():
            tensors[name].mul_(factor)


def _genotype(folder: Path) -> Any:
    path = folder / "genotype.json"
    if not path.is_file():
        raise NotFoundError(f"the search of this trial left no genotype at {path}")
    return json.loads(path.read_text())


def _counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Parameters (all, and nonzero) and nonzero multiply-adds per example."""
    from spx.workers.accounting import positions_per_example

    positions = positions_per_example(model, example)
    flops = sum(int(torch.count_nonzero(model.get_parameter(k))) * n for k, n in positions.items())
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "nonzero": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
        "flops": flops,
    }


def _write(output: Path, model: nn.Module, manifest: dict[str, Any]) -> None:
    """Both files through ``paths.write_output`` (exclusive temporary files, renamed)."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the folder ({exc.strerror})", field="--output", value=str(output)
        ) from exc
    state: dict[str, torch.Tensor] = {}
    stored: set[int] = set()
    for name, tensor in model.state_dict().items():
        # A tied weight (code-gpt's head is its token embedding) is one tensor under two
        # names; safetensors stores no shared memory, so the second name gets a copy.
        memory = tensor.untyped_storage().data_ptr()
        state[name] = tensor.detach().clone() if memory in stored else tensor.detach().contiguous()
        stored.add(memory)
    paths.write_output(output / WEIGHTS, save(state), force=True)
    text = json.dumps(manifest, indent=2, allow_nan=True)
    paths.write_output(output / MANIFEST, text, force=True)


def register(tracking_uri: str, run_id: str, folder: Path, manifest: dict[str, Any]) -> str:
    """Log the exported folder as an MLflow logged model of the trial's run; its id."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    counts = manifest.get("compact") or manifest["full"]
    model = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=f"{manifest['sweep']}-trial-{manifest['trial']}",
        source_run_id=run_id,
        params={
            "task": manifest["task"],
            "prune.method": manifest["config"]["prune"]["method"],
            "nas.method": manifest["config"]["nas"]["method"],
            "compact": str("compact" in manifest).lower(),
            "params": str(counts["params"]),
            "flops": str(counts["flops"]),
        },
        model_type="spx-safetensors",
    )
    get_artifact_repository(model.artifact_location).log_artifacts(str(folder))
    client.finalize_logged_model(model.model_id, "READY")
    return model.model_id
