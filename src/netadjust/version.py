"""The version of netadjust, recorded in every run directory and saved network."""

__version__ = "0.1.0"
