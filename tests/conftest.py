"""Markers follow the directory: tests/unit is unit, tests/netns is netns, tests/e2e is e2e."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["hanet.lab.pytest_plugin"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        for marker in ("unit", "netns", "e2e"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))
        if ("netns" in parts or "e2e" in parts) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root for network namespaces"))
