"""A network as a user writes one for 28x28 images: three VGG-style stages of two 3x3
convolutions, widths doubling after each pooling (16, 32, 64), picked by hand. Searched by
bench/quality.py through ``--model bench/models/small_vgg.py:net``."""

from torch import nn


def conv_bn(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()
    )


def net(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return nn.Sequential(
        conv_bn(in_channels, 16), conv_bn(16, 16), nn.MaxPool2d(2),
        conv_bn(16, 32), conv_bn(32, 32), nn.MaxPool2d(2),
        conv_bn(32, 64), conv_bn(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )  # fmt: skip
