"""netadjust: channel width search at a fixed FLOPs budget (Network Adjustment, CVPR 2020).

The Python API (see ``netadjust.api``): ``build``, ``cost``, ``load``, ``search``. It is
imported when first used, so that the command line's ``--help`` does not wait for torch.
"""

import sys
import types

from .version import __version__

__all__ = ["CostReport", "SearchResult", "build", "cost", "load", "search", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'netadjust' has no attribute {name!r}")


class _Package(types.ModuleType):
    """The package, whose API names stay the API's whatever is imported when: importing the
    submodules ``cost`` and ``search`` (``import netadjust.cost``) binds nothing over them
    (the modules stay importable by their full names)."""

    def __setattr__(self, name: str, value) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
