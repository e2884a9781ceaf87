"""A byte corpus built from the Python standard library's own ``.py`` sources.

Nothing is downloaded: the files are whatever this interpreter ships. Files go to train or
val by a hash of their relative path (about 5 % to val), so the split is fixed per file and
identical on every machine with the same Python. The bytes are cached once as two flat
uint8 files under ``<data_dir>/code-corpus-v1/``; concurrent trials build it safely (write
to a temporary name, then rename).
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

VERSION = "code-corpus-v1"
MAX_BYTES = 24 * 2**20
VAL_EVERY = 20


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if "site-packages" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _is_val(relative: str) -> bool:
    return int(hashlib.sha256(relative.encode()).hexdigest(), 16) % VAL_EVERY == 0


def build(data_dir: Path) -> dict[str, Path]:
    """Return the paths of ``train.bin`` and ``val.bin``, building them on first use."""
    folder = Path(data_dir) / VERSION
    paths = {split: folder / f"{split}.bin" for split in ("train", "val")}
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks: dict[str, list[bytes]] = {"train": [], "val": []}
    total = 0
    for path in stdlib_files():
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if total + len(data) > MAX_BYTES:
            break
        total += len(data)
        chunks["val" if _is_val(rel) else "train"].append(data)
    for split, parts in chunks.items():
        _atomic_write(paths[split], b"".join(parts))
    return paths


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name)
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
    os.replace(tmp, path)


def load(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped train and val bytes."""
    paths = build(data_dir)
    return tuple(np.memmap(paths[s], dtype=np.uint8, mode="r") for s in ("train", "val"))  # type: ignore[return-value]
