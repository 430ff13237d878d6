"""Chart tier (marker ``chart``): needs only the helm binary that ``make tools`` installs.

Helpers live in chart_helpers.py; ``render_chart(values=..., show_only=[...])`` is the entry point.
"""

from __future__ import annotations

import pytest
from chart_helpers import VERSIONS, helm_bin


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if helm_bin() is not None:
        return
    skip = pytest.mark.skip(reason="no helm binary at .cache/bin/helm or $HELM_BIN: run `make tools`")
    for item in items:
        if item.get_closest_marker("chart"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def versions() -> dict[str, str]:
    return VERSIONS
