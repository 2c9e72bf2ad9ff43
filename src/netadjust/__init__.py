"""netadjust: channel width search at a fixed FLOPs budget (Network Adjustment, CVPR 2020).

The Python API (see ``netadjust.api``): ``build``, ``cost``, ``load``, ``search``. It is
imported when first used, so that the command line's ``--help`` does not wait for torch.
"""

from .version import __version__

__all__ = ["CostReport", "SearchResult", "build", "cost", "load", "search", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'netadjust' has no attribute {name!r}")
