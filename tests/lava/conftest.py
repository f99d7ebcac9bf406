"""The Lava suite runs in .venv-lava (Python 3.10, lava-nc 0.10.0). It never skips: without Lava it
fails at collection and says how to get it."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

try:
    import lava  # noqa: F401
    from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise pytest.UsageError(
        f"tests/lava need lava-nc 0.10.0, which is not importable here ({exc}). Set up the Lava "
        "environment with `bash scripts/setup_lava.sh`, then run "
        "`.venv-lava/bin/python -m pytest tests/lava -m lava`.") from None


def pytest_collection_modifyitems(config, items):
    # Every test under tests/lava carries the `lava` marker, so `-m lava` never drops one silently.
    for item in items:
        if HERE in Path(item.path).resolve().parents and item.get_closest_marker("lava") is None:
            item.add_marker(pytest.mark.lava)
