"""Who is asking: a user name, e-mail, the code-hub groups they carry, admin or not."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class User:
    name: str
    email: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False

    def member_of(self, group: str, members: list[str]) -> bool:
        return self.admin or self.name in members or group in self.groups
