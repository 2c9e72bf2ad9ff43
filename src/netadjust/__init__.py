"""netadjust: channel width search at a fixed FLOPs budget (Network Adjustment, CVPR 2020)."""

__version__ = "0.1.0"
