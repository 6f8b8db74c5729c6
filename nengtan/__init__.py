"""Nengtan: edge-to-cloud energy-carbon metering.

This package holds what the agent and the receiver must agree on (the wire contract, the
measurement vocabulary, the exception tree) and the ``nengtan`` command line.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
