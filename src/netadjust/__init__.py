"""netadjust: channel width search at a fixed FLOPs budget (Network Adjustment, CVPR 2020).

The Python API (see ``netadjust.api``): ``build``, ``cost``, ``load``, ``search``.
"""

from .api import CostReport, SearchResult, build, cost, load, search
from .version import __version__

__all__ = ["CostReport", "SearchResult", "build", "cost", "load", "search", "__version__"]
