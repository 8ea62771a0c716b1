"""Load ``ductwork.yaml``, pick an environment, and build each resource's provider options.

Loading checks the file's structure. Provider options are checked per environment, when that
environment is used or validated: so a ``prd`` env that needs an uninstalled plugin or an unset
secret does not stop ``dev`` from working. Every error names the file, the env, the resource
path and the field, and says what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import SecretStr

from ductwork._hints import did_you_mean
from ductwork._redact import register_secret
from ductwork.config.models import SECTIONS, Product, Resource
from ductwork.config.references import resolve_references
from ductwork.errors import (
    ConfigError,
    DuctworkError,
    MissingDependencyError,
    NotFoundError,
    ReferenceResolutionError,
    UnknownProviderError,
)
from ductwork.providers.base import Options, Provider, ProviderContext

__all__ = ["DEFAULT_CONFIG", "ENV_VAR", "Config", "ResolvedResource"]

DEFAULT_CONFIG = "ductwork.yaml"
ENV_VAR = "DUCTWORK_ENV"


@dataclass(frozen=True)
class ResolvedResource:
    """One resource in one env: its provider class, validated options and context."""

    section: str
    tag: str
    env: str
    provider: str
    cls: type[Provider]
    options: Options
    context: ProviderContext
    resource: Resource

    def build(self) -> Provider:
        """A new (not yet opened) provider instance."""
        return self.cls(self.options, context=self.context)


class Config:
    """A loaded product config."""

    def __init__(self, product: Product, *, root: Path, file: Path | None = None) -> None:
        self.product = product
        self.root = root
        self.file = file
        self._resolved: dict[tuple[str, str, str], ResolvedResource] = {}

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str] = DEFAULT_CONFIG) -> Config:
        """Read and check ``path``."""
        file = Path(path)
        try:
            text = file.read_text()
        except FileNotFoundError:
            raise ConfigError(
                "config file not found; create one with `ductwork init` or pass --config",
                file=str(file),
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", file=str(file)) from exc
        return cls.from_text(text, root=file.resolve().parent, file=file)

    @classmethod
    def from_text(
        cls, text: str, *, root: str | os.PathLike[str] | None = None, file: Path | None = None
    ) -> Config:
        """Check a config given as YAML text (duplicate keys refused, YAML 1.2 booleans)."""
        from ductwork.config.yamlfile import load_yaml

        data = load_yaml(text, file=str(file) if file else None)
        return cls.from_dict(data, root=root, file=file)

    @classmethod
    def from_dict(
        cls, data: Any, *, root: str | os.PathLike[str] | None = None, file: Path | None = None
    ) -> Config:
        """Check a config given as data (``file`` only names it in errors)."""
        fname = str(file) if file else None
        if not isinstance(data, Mapping):
            raise ConfigError(
                "the config must be a mapping with at least 'product' and 'environments'",
                file=fname,
            )
        # Top-level ``x-`` keys hold anchors for the rest of the file, nothing else.
        data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        environments = data.get("environments")
        context = {"environments": environments if isinstance(environments, list) else []}
        base = Path(root) if root else Path.cwd()
        data = _resolve_settings(data, context["environments"], base, fname)
        try:
            product = Product.model_validate(data, context=context)
        except pydantic.ValidationError as exc:
            raise ConfigError(
                _describe(exc, Product, envs=context["environments"]), file=fname
            ) from None
        except ConfigError as exc:  # features, compiled at load, name their place: add the file
            if exc.file is not None or fname is None:
                raise
            raise type(exc)(exc.message, file=fname, env=exc.env, path=exc.path) from None
        return cls(product, root=base, file=file)

    # -- environments and resources --------------------------------------------------------

    def env_name(self, env: str | None = None) -> str:
        """The env to use: ``env``, else ``$DUCTWORK_ENV``, else ``default_env``, else the first."""
        name = env or os.environ.get(ENV_VAR) or self.product.default_env
        name = name or self.product.environments[0]
        if name not in self.product.environments:
            hint = did_you_mean(name, self.product.environments)
            raise ConfigError(
                f"unknown env {name!r}{hint} "
                f"(environments: {', '.join(self.product.environments)})",
                file=self._fname,
            )
        return name

    def resource(self, section: str, tag: str) -> Resource:
        """The resource ``tag`` of ``section``; :class:`NotFoundError` names the known tags."""
        resources: dict[str, Resource] = getattr(self.product, section)
        if tag in resources:
            return resources[tag]
        hint = did_you_mean(tag, resources)
        known = ", ".join(sorted(resources)) or "none defined"
        raise NotFoundError(f"no {section} resource {tag!r}{hint} ({section}: {known})")

    def resolve(self, section: str, tag: str, env: str | None = None) -> ResolvedResource:
        """Provider class and validated options of ``section.tag`` in ``env``."""
        env = self.env_name(env)
        key = (section, tag, env)
        found = self._resolved.get(key)
        if found is not None:  # resolved before: every call on the resource asks again
            return found
        from ductwork.plugins import get_registry

        resource = self.resource(section, tag)
        path = f"{section}.{tag}.{env}"
        if env not in resource.envs:
            raise ConfigError(
                f"{section}.{tag} has no settings for env {env!r}; add '{env}: {{provider: …}}'",
                file=self._fname,
                env=env,
            )
        raw = resource.envs[env]
        settings = resolve_references(
            raw, root=self.root, error=self._reference_error(env, path), path=""
        )
        name = settings.pop("provider")
        where = f"{self._fname or 'config'}, env {env!r}, {path}.provider"
        try:
            cls = get_registry().get(resource.kind, name)
        except MissingDependencyError as exc:
            raise MissingDependencyError(f"{where}: {exc}", install=exc.install) from exc
        except UnknownProviderError as exc:
            raise UnknownProviderError(f"{where}: {exc}") from exc
        try:
            options = cls.Options.model_validate(settings)
        except pydantic.ValidationError as exc:
            raise ConfigError(
                _describe(exc, cls.Options, prefix=path, provider=name),
                file=self._fname,
                env=env,
            ) from None
        _register_secret_fields(options)
        context = ProviderContext(
            resource=f"{section}.{tag}",
            env=env,
            provider=name,
            root=self.root,
            settings=resource.model_dump(exclude={"envs"}),
        )
        resolved = ResolvedResource(section, tag, env, name, cls, options, context, resource)
        self._resolved[key] = resolved
        return resolved

    def validate(self, env: str | None = None) -> list[ResolvedResource]:
        """Resolve every resource in ``env``; raise the problem, or one listing them all."""
        env = self.env_name(env)
        problems: list[DuctworkError] = []
        resolved: list[ResolvedResource] = []
        for section, tag, _ in self.product.resources():
            try:
                resolved.append(self.resolve(section, tag, env))
            except DuctworkError as exc:
                problems.append(exc)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise ConfigError(
                f"{len(problems)} problems in env {env!r}:\n  - "
                + "\n  - ".join(str(p) for p in problems)
            )
        return resolved

    def show(self, env: str | None = None) -> dict[str, Any]:
        """The config as ``env`` sees it, resolved, with every secret replaced by ``***``."""
        from ductwork._redact import redact

        env = self.env_name(env)
        out: dict[str, Any] = {"product": self.product.product, "env": env}
        for resolved in self.validate(env):
            section = out.setdefault(resolved.section, {})
            entry: dict[str, Any] = {"provider": resolved.provider}
            entry.update(resolved.options.model_dump(mode="json", exclude_defaults=False))
            entry.update(
                {k: v for k, v in resolved.context.settings.items() if v not in ({}, [], None)}
            )
            section[resolved.tag] = entry
        for tag, sessions in self.product.sessions.items():  # keys never shown, even as written
            entry = sessions.model_dump(mode="json")
            entry["keys"] = [{"id": key["id"], "key": "***"} for key in entry["keys"]]
            out.setdefault("sessions", {})[tag] = entry
        shown: dict[str, Any] = _redact_tree(out, redact)
        return shown

    @property
    def _fname(self) -> str | None:
        return str(self.file) if self.file else None

    def _reference_error(self, env: str, path: str) -> Any:
        def build(field: str, message: str) -> ReferenceResolutionError:
            where = f"{path}.{field}" if field else path
            return ReferenceResolutionError(message, file=self._fname, env=env, path=where)

        return build


def _resolve_settings(
    data: Mapping[str, Any], environments: list[Any], root: Path, fname: str | None
) -> dict[str, Any]:
    """``data`` with references in resource-level settings resolved (at load, for every env).

    Per-env provider settings are left as written: they resolve when their env is used.
    """

    def error(path: str, message: str) -> ReferenceResolutionError:
        return ReferenceResolutionError(message, file=fname, path=path)

    out = dict(data)
    for section in SECTIONS:
        resources = out.get(section)
        if not isinstance(resources, Mapping):
            continue
        resolved: dict[str, Any] = {}
        for tag, resource in resources.items():
            if isinstance(resource, Mapping):
                resource = {
                    key: value
                    if key in environments
                    else resolve_references(
                        value, root=root, error=error, path=f"{section}.{tag}.{key}"
                    )
                    for key, value in resource.items()
                }
            resolved[tag] = resource
        out[section] = resolved
    return out


def _register_secret_fields(options: pydantic.BaseModel) -> None:
    # Read from the instance's fields: getattr would warn about a deprecated option's use.
    for name in type(options).model_fields:
        _register_secret_value(vars(options).get(name))


def _register_secret_value(value: Any) -> None:
    """Register ``value`` if secret; walk nested models, lists and dicts (``urls: [SecretStr]``)."""
    if isinstance(value, SecretStr):
        register_secret(value.get_secret_value())
    elif isinstance(value, pydantic.BaseModel):
        _register_secret_fields(value)
    elif isinstance(value, list | tuple):
        for item in value:
            _register_secret_value(item)
    elif isinstance(value, dict):
        for item in value.values():
            _register_secret_value(item)


def _redact_tree(value: Any, redact: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_tree(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_tree(v, redact) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _describe(
    exc: pydantic.ValidationError,
    model: type[pydantic.BaseModel],
    *,
    prefix: str = "",
    provider: str | None = None,
    envs: list[str] | None = None,
) -> str:
    """One line per pydantic error: where, what, and what is allowed. Never echoes values."""
    lines: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p != "envs"] or [str(p) for p in err["loc"]]
        where = ".".join(p for p in [prefix, *loc] if p)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, err["loc"][:-1])
            hint = did_you_mean(loc[-1], allowed)
            owner = f"provider {provider!r}" if provider else "this place"
            extra = ""
            if envs is not None and len(loc) == 3 and loc[0] in SECTIONS:
                extra = f" It is not an environment either ({', '.join(envs)})."
            lines.append(
                f"{where}: unknown option {loc[-1]!r} for {owner}{hint} "
                f"(allowed: {', '.join(allowed) or 'none'}).{extra}"
            )
        elif kind == "missing":
            lines.append(f"{where}: required option {loc[-1]!r} is missing")
        else:
            lines.append(f"{where or 'config'}: {err['msg']}")
    return "\n".join(lines) if len(lines) == 1 else "\n  - " + "\n  - ".join(lines)


def _allowed_fields(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking ``loc`` (best effort)."""
    current: Any = model
    for part in loc:
        if part == "envs":
            return ["provider"]
        fields = getattr(current, "model_fields", None)
        if fields is None or not isinstance(part, str):
            if isinstance(part, str) and current is not model:
                continue
            continue
        if part in fields:
            current = _inner_model(fields[part].annotation)
        else:
            # a dict key (a tag): the value type is the dict's value model
            continue
    fields = getattr(current, "model_fields", None)
    names = sorted(n for n in (fields or {}) if n != "envs")
    return ["provider", *names] if current is not model and fields and "envs" in fields else names


def _inner_model(annotation: Any) -> Any:
    import typing

    for arg in (*typing.get_args(annotation), annotation):
        if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
            return arg
        inner = typing.get_args(arg)
        for a in inner:
            if isinstance(a, type) and issubclass(a, pydantic.BaseModel):
                return a
    return annotation
