"""Who is asking: a principal's name, e-mail, the code-hub groups they carry, admin or not.

A person is named by the identity proxy; an API token is its own principal, named
``token:<name>`` (no person can be named so), acting only within the groups and admin flag
configured for it. Names arrive folded (``models.fold_name``): compare them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TOKEN_PREFIX = "token:"


@dataclass(frozen=True)
class User:
    name: str
    email: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    token: bool = False  # an API token: never matched by name, only by its scope

    def member_of(self, group: str, members: list[str]) -> bool:
        """Platform admin, carrying the group, or (people only) listed in its members."""
        if self.admin or group in self.groups:
            return True
        return not self.token and self.name in members

    def admin_of(self, admins: list[str]) -> bool:
        """A platform admin, or (people only) listed in the group's admins."""
        return self.admin or (not self.token and self.name in admins)
