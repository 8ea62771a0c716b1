"""Shared fixtures: a product folder on the embedded providers."""

from __future__ import annotations

from pathlib import Path

import pytest
from ductwork.client import Ductwork
from ductwork.config.loader import Config
from ductwork.demo import sample_config


@pytest.fixture
def product_dir(tmp_path: Path) -> Path:
    (tmp_path / "ductwork.yaml").write_text(sample_config())
    return tmp_path


@pytest.fixture
async def dw(product_dir: Path):
    async with Ductwork(Config.load(product_dir / "ductwork.yaml"), env="dev") as client:
        yield client
