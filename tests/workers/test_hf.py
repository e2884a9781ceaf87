"""task: hf-causal-lm on tiny GPT-2- and LLaMA-style models built from a config here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from spx.errors import ConfigError
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, build_state, train
from spx.workers.tasks import build_task

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """One corpus cache for the module (building it reads the standard library)."""
    return tmp_path_factory.mktemp("data")


def tiny(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=256, n_positions=64, n_embd=32, n_layer=2, n_head=2
        )
    else:
        config = transformers.LlamaConfig(
            vocab_size=256,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
        )
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def flat(folder: Path, **extra) -> dict:
    return {
        "model.path": str(folder),
        "model.context": 16,
        "train.batch_size": 4,
        "train.steps": 4,
        "train.report_every": 4,
        "prune.method": "magnitude",
        "prune.sparsity": 0.5,
        "prune.schedule.start": 0.0,
        "prune.schedule.end": 0.5,
        "prune.schedule.every": 2,
        **extra,
    }


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_local_model_trains_pruned_and_reports_perplexity(kind, tmp_path, data):
    folder = tiny(kind, tmp_path / kind)
    cfg = TrialConfig.from_flat("hf-causal-lm", flat(folder))
    task = build_task("hf-causal-lm", data)
    task.validate(cfg)
    state = build_state(cfg, task)
    names = set(state.pruner.weights)
    if kind == "gpt2":  # the Conv1D projections are pruned, the tied head/embedding not
        assert "transformer.h.0.attn.c_attn.weight" in names
        assert not any("wte" in n or "lm_head" in n for n in names)
    else:
        assert "model.layers.0.self_attn.q_proj.weight" in names
        assert "lm_head.weight" not in names  # the head stays dense unless asked
    final = train(cfg, task, ListReporter())
    assert final["model/sparsity"] == pytest.approx(0.5, abs=0.01)
    assert final["val/ppl"] == pytest.approx(math.exp(final["val/loss"]))
    assert 1.0 < final["val/ppl"] < 1000.0


def test_the_head_is_pruned_when_asked(tmp_path, data):
    folder = tiny("llama", tmp_path / "llama")
    cfg = TrialConfig.from_flat("hf-causal-lm", flat(folder, **{"prune.embeddings": True}))
    state = build_state(cfg, build_task("hf-causal-lm", data))
    assert "lm_head.weight" in state.pruner.weights


def test_a_folder_that_is_not_a_model_is_refused_naming_model_path(tmp_path, data):
    (tmp_path / "empty").mkdir()
    cfg = TrialConfig.from_flat("hf-causal-lm", flat(tmp_path / "empty"))
    with pytest.raises(ConfigError) as err:
        build_task("hf-causal-lm", data).validate(cfg)
    assert err.value.field == "model.path"
    assert "config.json" in str(err.value)


def test_a_context_longer_than_the_model_positions_is_refused(tmp_path, data):
    folder = tiny("gpt2", tmp_path / "gpt2")
    cfg = TrialConfig.from_flat("hf-causal-lm", flat(folder, **{"model.context": 128}))
    with pytest.raises(ConfigError) as err:
        build_task("hf-causal-lm", data).validate(cfg)
    assert err.value.field == "model.context"
