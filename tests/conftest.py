"""Shared pytest configuration: paths to the shared artefacts and the Odoo fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.odoo_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
#: The shared folder beside the checkout (cases, Peppol examples and specs).
SHARED = Path(os.environ.get("CRM_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"no shared folder at {SHARED} (set CRM_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def load_case(shared_dir: Path):
    """Load a field case file from shared/cases by name."""

    def load(name: str) -> Any:
        path = shared_dir / "cases" / name
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        return path.read_bytes()

    return load
