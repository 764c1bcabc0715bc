"""ferryman: an HTTP file server and caching gateway."""

__version__ = "0.1.0"
