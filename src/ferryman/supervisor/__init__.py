"""The arbiter and its workers: a supervision tree of processes (see arbiter.py)."""
