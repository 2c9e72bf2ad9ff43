"""netadjust: channel width search at a fixed FLOPs budget (Network Adjustment, CVPR 2020).

The Python API (see ``netadjust.api``): ``build``, ``cost``, ``load``, ``search``.
"""

__version__ = "0.1.0"

from .api import CostReport, SearchResult, build, cost, load, search  # noqa: E402

__all__ = ["CostReport", "SearchResult", "build", "cost", "load", "search", "__version__"]
