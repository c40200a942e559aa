"""Drax: speech recognition with discrete flow matching, as an ESPnet-style toolkit."""

__version__ = "0.1.0"
