"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds ``tensors.safetensors`` (weights, masks, optimizer tensors, RNG
states) and ``state.json`` (step, optimizer hyper-parameters, counters). It is written to a
temporary folder and renamed, so a crash leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS = "tensors.safetensors"
STATE = "state.json"


def save(folder: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Per-process names: a stale worker from a dead driver may still be saving beside us.
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, tmp / TENSORS)
    (tmp / STATE).write_text(json.dumps(state, sort_keys=True))
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The checkpoint in ``folder``, or None when there is none."""
    folder = Path(folder)
    if not (folder / STATE).is_file():
        # A crash between the two renames of save() leaves only the previous one.
        olds = sorted(folder.parent.glob(f"{folder.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if not olds or not (olds[-1] / STATE).is_file():
            return None
        folder = olds[-1]
    return load_file(folder / TENSORS), json.loads((folder / STATE).read_text())


def optimizer_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state dict as (tensors by flat name, JSON-safe rest)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim/{idx}/{key}"] = value
            else:
                plain.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def optimizer_join(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`optimizer_split`, as a dict ``load_state_dict`` accepts."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, idx, key = name.split("/", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, slots in rest["plain"].items():
        state.setdefault(int(idx), {}).update(slots)
    return {"state": state, "param_groups": rest["param_groups"]}
