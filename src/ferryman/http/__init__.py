"""Sans-I/O HTTP/1.1: bytes in, events out; responses described, never written.

Nothing in this package touches sockets, files, the clock or the event loop;
tests/unit/test_http_purity.py enforces that by scanning its imports.
"""
