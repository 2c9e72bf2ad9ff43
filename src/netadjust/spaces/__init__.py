"""The built-in search spaces: the registry and its contracts (``registry``), and the
families that register themselves on import. See ``registry`` for what a space provides."""

from . import densenet, mobilenet, pyramidnet, resnet_cifar, resnet_imagenet  # noqa: F401  (they register)
from .registry import (
    ChainedModel,
    ChannelTap,
    ModelSpec,
    SearchSpace,
    StagedModel,
    Widths,
    base_widths,
    build,
    check_widths,
    get_space,
    network_name,
    register,
    register_family,
    space_names,
    width_grid,
    width_multiples,
)

__all__ = [
    "ChainedModel",
    "ChannelTap",
    "ModelSpec",
    "SearchSpace",
    "StagedModel",
    "Widths",
    "base_widths",
    "build",
    "check_widths",
    "get_space",
    "network_name",
    "register",
    "register_family",
    "space_names",
    "width_grid",
    "width_multiples",
]
