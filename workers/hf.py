"""``task: hf-causal-lm``: a Hugging Face causal language model from a folder on disk.

``model.path`` names a directory that ``save_pretrained`` wrote (``config.json`` and the
weights). Nothing is downloaded (``local_files_only``) and no code from the folder runs
(``trust_remote_code=False``): a model type transformers does not ship is refused.

Text is the same standard-library corpus code-gpt reads (corpus.py). With a tokenizer in
the folder, it is encoded once by that tokenizer and cached under the data folder by the
tokenizer files' hash; without one, token ids are the bytes themselves (the model's
vocabulary must then hold 256 ids, as the tiny models the tests build from a config do).
``model.context`` is the sequence length in tokens. Evaluation scores fixed, evenly spaced
windows of the val split, so every trial of a sweep sees the same tokens: ``val/loss``
(nats per token), ``val/ppl`` (its exponential) and ``val/acc`` (next-token accuracy).

Prunable weights are the Linear layers of the blocks and GPT-2's ``Conv1D`` projections;
the token embedding and the output head stay dense unless ``prune.embeddings`` is true.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from spx.errors import ConfigError
from spx.workers import corpus
from spx.workers.config import TrialConfig
from spx.workers.methods import method_class
from spx.workers.taskbase import Part, WindowLM, register

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def model_folder(cfg: TrialConfig) -> Path:
    """``model.path`` checked: a folder holding a transformers ``config.json``."""
    raw = cfg.model.path
    if not raw:
        raise ConfigError("task hf-causal-lm needs model.path, a model folder", field="model.path")
    folder = Path(raw).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            "not a transformers model folder (no config.json there)",
            field="model.path",
            value=raw,
        )
    return folder


def hf_config(cfg: TrialConfig) -> Any:
    from transformers import AutoConfig

    folder = model_folder(cfg)
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"transformers cannot read this model folder ({first[:200]})",
            field="model.path",
            value=str(folder),
        ) from None


def _keep_dense(model: nn.Module, embeddings: bool) -> nn.Module:
    """Mark the output head dense unless asked (masks.py reads ``dense_weights``)."""
    output_embeddings = getattr(model, "get_output_embeddings", None)
    head = output_embeddings() if callable(output_embeddings) else None
    if head is None or embeddings:
        return model
    names = [n for n, p in model.named_parameters() if p is head.weight]
    model.dense_weights = tuple(names)  # type: ignore[assignment]
    return model


@register
class HFCausalLM(WindowLM):
    """A transformers causal LM from ``model.path``; reports val/loss, val/ppl, val/acc."""

    name = "hf-causal-lm"
    eval_metrics: ClassVar[tuple[str, ...]] = (*WindowLM.eval_metrics, "val/ppl")

    def validate(self, cfg: TrialConfig) -> None:
        config = hf_config(cfg)
        tokenizer = _has_tokenizer(model_folder(cfg))
        vocab = int(getattr(config, "vocab_size", 0) or 0)
        if not tokenizer and vocab < 256:
            raise ConfigError(
                f"the model folder has no tokenizer, so tokens are bytes, but its vocab_size "
                f"is {vocab} (< 256)",
                field="model.path",
                value=cfg.model.path,
            )
        limit = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        if limit is not None and cfg.model.context > int(limit):
            raise ConfigError(
                f"longer than the model's {limit} positions",
                field="model.context",
                value=cfg.model.context,
            )
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        method_class(cfg.prune.method).validate(cfg, _keep_dense(model, cfg.prune.embeddings))

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        from transformers import AutoModelForCausalLM

        hf_config(cfg)  # the same refusals as validate, before any weight is read
        model = AutoModelForCausalLM.from_pretrained(
            model_folder(cfg),
            local_files_only=True,
            trust_remote_code=False,
            dtype=torch.float32,
        )
        return _keep_dense(model, cfg.prune.embeddings)

    def splits(self, cfg: TrialConfig) -> tuple[np.ndarray, np.ndarray]:
        return tokens(model_folder(cfg), self.data_dir)

    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(input_ids=x).logits

    def evaluate(self, model: nn.Module, cfg: TrialConfig, part: Part = "val") -> dict[str, float]:
        scores = super().evaluate(model, cfg, part)
        return {**scores, "val/ppl": math.exp(min(scores["val/loss"], 700.0))}

    def prepare(self) -> None:
        corpus.load(self.data_dir)


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def tokens(folder: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The corpus as token ids: its bytes, or its text through the folder's tokenizer
    (encoded once, cached by the tokenizer files' hash)."""
    train, val = corpus.load(data_dir)
    if not _has_tokenizer(folder):
        return train, val
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    cache = Path(data_dir) / "hf-tokens" / digest.hexdigest()[:16]
    paths = {split: cache / f"{split}.bin" for split in ("train", "val")}
    if not all(p.is_file() for p in paths.values()):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
        cache.mkdir(parents=True, exist_ok=True)
        for split, data in (("train", train), ("val", val)):
            text = bytes(data).decode("utf-8", errors="replace")
            ids = np.asarray(tokenizer(text)["input_ids"], dtype=np.int32)
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=split)
            with os.fdopen(fd, "wb") as fh:
                fh.write(ids.tobytes())
            os.replace(tmp, paths[split])
    return tuple(np.memmap(paths[s], dtype=np.int32, mode="r") for s in ("train", "val"))  # type: ignore[return-value]
