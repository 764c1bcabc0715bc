"""ferryman: an HTTP file server and caching gateway."""

__version__ = "0.1.0"

# Before any request-path module is imported: compiled, or pure Python.
from ferryman import native as _native

_native.choose()
