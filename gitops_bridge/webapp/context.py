"""Access to the service, settings and current user from inside a request."""

from __future__ import annotations

from flask import current_app, g

from gitops_bridge.config import Settings
from gitops_bridge.identity import User
from gitops_bridge.monitor import Monitor
from gitops_bridge.service import Service


def svc() -> Service:
    service = current_app.extensions["gitops_bridge"]
    assert isinstance(service, Service)
    return service


def settings() -> Settings:
    value = current_app.extensions["gitops_bridge.settings"]
    assert isinstance(value, Settings)
    return value


def monitor() -> Monitor:
    value = current_app.extensions["gitops_bridge.monitor"]
    assert isinstance(value, Monitor)
    return value


def user() -> User:
    current = g.get("user")
    assert isinstance(current, User)
    return current
