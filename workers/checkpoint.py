"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds ``tensors.safetensors`` (weights, masks, optimizer tensors, RNG
states), ``state.json`` (step, optimizer hyper-parameters, counters) and ``manifest.json``
(the size and sha256 of both), written last. A new checkpoint is written into a temporary
folder and renamed into place; the one it replaces is kept beside it as ``<name>.prev``
until the next one is complete, and anything older is removed. So a crash while saving
leaves the previous checkpoint whole, and a file damaged afterwards (a machine that went
down before the page cache reached the disk, a full disk, a careless copy) is caught by its
checksum: :func:`load` then falls back to the previous checkpoint, or, when there is none,
raises :class:`CheckpointError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors

from spx.errors import TrialError

TENSORS = "tensors.safetensors"
STATE = "state.json"
MANIFEST = "manifest.json"
PREVIOUS = ".prev"
"""Suffix of the folder that keeps the checkpoint before the current one."""

log = logging.getLogger("spx.checkpoint")


class CheckpointError(TrialError):
    """A checkpoint file is missing, truncated, corrupt or unreadable; names the file."""


def save(folder: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Write a checkpoint to ``folder``, keeping the one it replaces as ``<folder>.prev``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Per-process names: a stale worker from a dead driver may still be saving beside us.
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(tmp, tensors, state)
    except BaseException:  # a full disk, an interrupt: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        _keep_as_previous(old, folder.with_name(folder.name + PREVIOUS))


def _write(tmp: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    blobs = {
        TENSORS: dump_tensors({k: v.detach().contiguous().clone() for k, v in tensors.items()}),
        STATE: json.dumps(state, sort_keys=True).encode(),
    }
    for name, blob in blobs.items():
        (tmp / name).write_bytes(blob)
    files = {name: {"bytes": len(b), "sha256": _sha256(b)} for name, b in blobs.items()}
    (tmp / MANIFEST).write_text(json.dumps({"files": files}, sort_keys=True))


def _keep_as_previous(old: Path, previous: Path) -> None:
    """``old`` becomes the fallback, unless it is visibly damaged (then the older one stays)."""
    if not _looks_whole(old):
        shutil.rmtree(old, ignore_errors=True)
        return
    shutil.rmtree(previous, ignore_errors=True)
    try:
        os.replace(old, previous)
    except OSError:  # another process made its own `.prev` in between: keep that one
        shutil.rmtree(old, ignore_errors=True)


def _looks_whole(folder: Path) -> bool:
    """Cheap check (sizes only, no hashing) that a checkpoint is complete."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        return all((folder / name).stat().st_size == f["bytes"] for name, f in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The checkpoint in ``folder`` (its tensors and state), or None when there is none.

    A damaged checkpoint falls back to the previous one (with a warning naming what was
    wrong); with none to fall back to it raises :class:`CheckpointError`.
    """
    folder = Path(folder)
    errors: list[CheckpointError] = []
    for candidate in _candidates(folder):
        try:
            loaded = _read(candidate)
        except CheckpointError as exc:
            errors.append(exc)
            continue
        if errors:
            log.warning("%s; using the previous checkpoint, %s", errors[0], candidate)
        return loaded
    if not errors:
        return None
    if len(errors) == 1:
        raise errors[0]
    raise CheckpointError(f"{errors[0]} (the previous checkpoint is damaged too: {errors[-1]})")


def _candidates(folder: Path) -> list[Path]:
    """Where a checkpoint may be: the folder itself, then, newest first, the previous one
    and any that a crash between the two renames of :func:`save` left as ``.old-<pid>``."""
    older = [*folder.parent.glob(f"{folder.name}.old-*"), folder.with_name(folder.name + PREVIOUS)]
    return [p for p in (folder, *sorted(older, key=_mtime, reverse=True)) if p.is_dir()]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # renamed by a concurrent save since it was listed
        return 0.0


def _read(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    files = _manifest(folder)
    blobs = {name: _verified(folder / name, files.get(name)) for name in (TENSORS, STATE)}
    try:
        tensors = load_tensors(blobs[TENSORS])
    except Exception as exc:  # safetensors raises its own SafetensorError, or a ValueError
        raise CheckpointError(
            f"{folder / TENSORS}: not a readable safetensors file ({exc})"
        ) from None
    try:
        state = json.loads(blobs[STATE])
    except ValueError as exc:
        raise CheckpointError(f"{folder / STATE}: not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise CheckpointError(f"{folder / STATE}: expected a JSON object, got a {kind}")
    return tensors, state


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The recorded size and checksum of each file; empty for a checkpoint written before
    checksums were (its files are read unverified)."""
    path = folder / MANIFEST
    if not path.exists():
        if not (folder / STATE).exists():
            raise CheckpointError(f"{folder}: not a checkpoint (no {STATE}, no {MANIFEST})")
        return {}
    try:
        files = json.loads(path.read_bytes())["files"]
        if not isinstance(files, dict):
            raise TypeError(type(files).__name__)
        return files
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: not a valid manifest ({type(exc).__name__}: {exc})"
        ) from None


def _verified(path: Path, expected: dict[str, Any] | None) -> bytes:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    if expected is None:
        return blob
    if len(blob) != expected.get("bytes"):
        raise CheckpointError(
            f"{path}: truncated or overwritten: {len(blob)} bytes, the manifest says "
            f"{expected.get('bytes')}"
        )
    if _sha256(blob) != expected.get("sha256"):
        raise CheckpointError(f"{path}: corrupt: its sha256 differs from the manifest's")
    return blob


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


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
