"""Coverage-guided fuzzing of the request parser with atheris: `make fuzz`."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from tests.fuzz.targets import check_one_input


def one_input(blob: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(blob)
    splits = [fdp.ConsumeIntInRange(0, 512) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    check_one_input(fdp.ConsumeBytes(fdp.remaining_bytes()), splits)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
