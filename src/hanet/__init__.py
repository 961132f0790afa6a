"""hanet: high-availability networking for private clouds."""

__version__ = "0.1.0"
