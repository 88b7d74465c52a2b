"""The unit of output: a repository path and its text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Manifest:
    path: str
    text: str

    @property
    def data(self) -> bytes:
        return self.text.encode()
