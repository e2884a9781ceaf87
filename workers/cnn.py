"""A small ResNet-style CNN for 8x8 single-channel images (the digits workload).

A 3x3 stem conv (kept dense: ``dense_weights``, as §6 and §7 advise for the first conv,
whose one input channel no N:M group fits), ``depth`` basic residual blocks (two 3x3
convs with batch norm; the block halfway down halves the resolution and doubles the
width, with a 1x1 projection shortcut), global average pooling and a linear classifier
(``output_layer``: channel pruning keeps all its outputs).

>>> import torch
>>> CNN(classes=10, width=8, depth=2)(torch.zeros(3, 64)).shape
torch.Size([3, 10])
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class CNN(nn.Module):
    dense_weights = ("stem.weight",)
    output_layer = "fc.weight"

    def __init__(self, classes: int, width: int, depth: int, side: int = 8):
        super().__init__()
        self.side = side
        self.stem = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, size = [], width
        for i in range(depth):
            down = depth > 1 and i == depth // 2
            blocks.append(Block(size, size * 2 if down else size, 2 if down else 1))
            size = size * 2 if down else size
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(size, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(-1, 1, self.side, self.side)
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))
