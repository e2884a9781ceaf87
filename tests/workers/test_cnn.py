import torch

from spx.workers.cnn import CNN
from spx.workers.config import TrialConfig
from spx.workers.loop import ListReporter, train
from spx.workers.masks import prunable_weights
from spx.workers.tasks import build_task


def _cfg(**flat):
    base = {"train.steps": 12, "model.width": 8, "model.depth": 2, "train.report_every": 6}
    return TrialConfig.from_flat("digits-cnn", {**base, **flat})


def test_the_cnn_is_a_small_resnet_with_a_dense_stem():
    model = CNN(10, width=8, depth=2)
    assert list(prunable_weights(model)) == [
        "blocks.0.conv1.weight",
        "blocks.0.conv2.weight",
        "blocks.1.conv1.weight",
        "blocks.1.conv2.weight",
        "blocks.1.shortcut.0.weight",
        "fc.weight",
    ]
    assert model.blocks[1].conv1.weight.shape == (16, 8, 3, 3)  # halfway: 2x wide, 4x4
    assert model(torch.zeros(2, 64)).shape == (2, 10)


def test_digits_cnn_trains_and_counts_conv_flops_per_position():
    final = train(_cfg(), build_task("digits-cnn"), ListReporter())
    assert 0.0 <= final["val/acc"] <= 1.0
    # 8x8 positions in block 0, 4x4 in block 1; the dense stem counts too
    convs = 64 * (8 * 9 + 2 * 8 * 8 * 9) + 16 * (8 * 16 * 9 + 16 * 16 * 9 + 8 * 16)
    assert final["model/flops"] == convs + 16 * 10


def test_nm_on_conv_groups_along_input_channels():
    rep = ListReporter()
    final = train(_cfg(**{"prune.method": "nm"}), build_task("digits-cnn"), rep)
    assert final["model/sparsity"] == 0.5
    _, _, table = rep.tables[0]
    assert table["density"] == [0.5] * 6


def test_channel_pruning_on_the_cnn_keeps_the_classifier_outputs():
    rep = ListReporter()
    cfg = _cfg(
        **{
            "prune.method": "channel",
            "prune.sparsity": 0.5,
            "prune.schedule.kind": "one-shot",
            "prune.schedule.end": 0.0,
        }
    )
    train(cfg, build_task("digits-cnn"), rep)
    _, _, table = rep.tables[-1]
    density = dict(zip(table["layer"], table["density"], strict=True))
    assert density.pop("fc.weight") == 1.0
    assert list(density.values()) == [0.5] * 5
