"""The recipes of docs/frameworks.md, copied out of the page into a folder on ``sys.path``."""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

PAGE = Path(__file__).parents[2] / "docs" / "frameworks.md"
_RECIPE = re.compile(r"<!-- recipe: (\S+) -->\n```python\n(.*?)```", re.S)


def recipes() -> dict[str, str]:
    """Each recipe's file name and code, as the page shows them."""
    return {name: code for name, code in _RECIPE.findall(PAGE.read_text())}


class Recipes:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, name: str, extra: str = "") -> Path:
        file = self.folder / name
        file.parent.mkdir(parents=True, exist_ok=True)
        if file.parent != self.folder:
            (file.parent / "__init__.py").touch()
        file.write_text(recipes()[name] + extra)
        return file

    def load(self, module: str) -> ModuleType:
        return importlib.import_module(module)


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recipes:
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield Recipes(folder)
    for name in set(sys.modules) - before:  # the recipes' modules, never shared between tests
        if getattr(sys.modules[name], "__file__", None) and str(folder) in str(
            sys.modules[name].__file__
        ):
            del sys.modules[name]


@pytest.fixture
def product(product_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample product's config, named by ``$DUCTWORK_CONFIG`` and ``$DUCTWORK_ENV``."""
    config = product_dir / "ductwork.yaml"
    # memory caches of one namespace share values within a process: this test's own
    own = f"{{provider: memory, namespace: {uuid.uuid4().hex}}}"
    config.write_text(config.read_text().replace("{provider: memory}", own))
    monkeypatch.setenv("DUCTWORK_CONFIG", str(config))
    monkeypatch.setenv("DUCTWORK_ENV", "dev")
    return config
