"""``${env:NAME}``, ``${file:PATH}`` and ``${secret:NAME}`` references in config values.

A reference may be the whole value or part of it (``postgres://app:${env:PW}@db/app``), and may
carry a default: ``${env:REGION:-eu-west-1}``. Every value that comes from a reference is
registered with :mod:`ductwork._redact` so it never appears in output, errors or logs.

``secret`` looks in the environment, then in ``<config folder>/.ductwork/secrets/NAME``, then in
``/run/secrets/NAME`` (where orchestrators mount secrets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ductwork._redact import register_secret
from ductwork.errors import ReferenceResolutionError

__all__ = ["REFERENCE", "has_reference", "resolve_references"]

REFERENCE = re.compile(r"\$\{(?P<kind>env|file|secret):(?P<name>[^}:]+)(?::-(?P<default>[^}]*))?\}")
SECRET_DIRS = (Path(".ductwork/secrets"), Path("/run/secrets"))


def has_reference(value: Any) -> bool:
    """Whether ``value`` (or anything inside it) holds a reference."""
    if isinstance(value, str):
        return REFERENCE.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(has_reference(v) for v in value)
    return False


def resolve_references(
    value: Any,
    *,
    root: Path,
    environ: Mapping[str, str] | None = None,
    error: Callable[[str, str], ReferenceResolutionError],
    path: str = "",
) -> Any:
    """``value`` with every reference replaced; ``error(path, message)`` builds the failure."""
    env = os.environ if environ is None else environ
    if isinstance(value, Mapping):
        return {
            k: resolve_references(v, root=root, environ=env, error=error, path=f"{path}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            resolve_references(v, root=root, environ=env, error=error, path=f"{path}[{i}]")
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        kind, name, default = match["kind"], match["name"].strip(), match["default"]
        found = _lookup(kind, name, root, env)
        if found is None:
            if default is not None:
                return default
            raise error(path.lstrip("."), _missing(kind, name, root))
        register_secret(found)
        return found

    return REFERENCE.sub(substitute, value)


def _lookup(kind: str, name: str, root: Path, env: Mapping[str, str]) -> str | None:
    if kind == "env":
        return env.get(name)
    if kind == "file":
        file = Path(name).expanduser()
        file = file if file.is_absolute() else root / file
        try:
            return file.read_text().strip()
        except OSError:
            return None
    if name in env:
        return env[name]
    for folder in SECRET_DIRS:
        candidate = folder if folder.is_absolute() else root / folder
        try:
            return (candidate / name).read_text().strip()
        except OSError:
            continue
    return None


def _missing(kind: str, name: str, root: Path) -> str:
    if kind == "env":
        return f"environment variable {name} is not set (referenced as ${{env:{name}}})"
    if kind == "file":
        return f"file {name} cannot be read (referenced as ${{file:{name}}}, relative to {root})"
    places = ", ".join(str(d / name) for d in SECRET_DIRS)
    return f"secret {name} is not set: set the environment variable {name} or write it to {places}"
