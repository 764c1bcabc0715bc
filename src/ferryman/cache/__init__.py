"""The block cache in front of a remote store (decision 0012).

Storage, owned here: `blockmap` (block arithmetic), `crypto` (the cache key,
sealing, entry names), `entry` and `entryfiles` (entries on disk: the
filler's writer, the workers' reader), `eviction` (what goes, and going).
The filler process is the only writer of a cache directory; workers read.
"""
