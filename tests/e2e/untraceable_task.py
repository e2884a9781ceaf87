"""A custom task whose model branches on its input's values: torch.fx cannot trace it, so
OTO's zero-invariant groups cannot be built (the malformed-sweep corpus)."""

from torch import Tensor, nn

from spx.workers.tasks import DigitsMLP


class Gated(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, width), nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x).relu()
        if h.sum() > 0:  # data-dependent control flow
            h = h * 2
        return self.fc2(h)


class GatedMLP(DigitsMLP):
    def build_model(self, cfg):
        return Gated(cfg.model.width)
