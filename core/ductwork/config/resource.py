"""What every resource section shares: the strict model base and the per-env split.

A resource section maps tags to resources. Inside a resource, a key naming one of the product's
``environments`` holds that env's provider settings (``provider:`` plus the provider's options,
validated later against its typed ``Options``); every other key is a resource-level setting.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

__all__ = ["Model", "Resource"]


class Model(BaseModel):
    """A config model: unknown keys refused, frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resource(Model):
    """A resource: per-env provider settings plus resource-level settings."""

    section: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    envs: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_envs(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        environments = (info.context or {}).get("environments", ())
        envs: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in data.items():
            (envs if key in environments else rest)[key] = value
        for env, settings in envs.items():
            if not isinstance(settings, dict) or not isinstance(settings.get("provider"), str):
                raise ValueError(
                    f"env {env!r} must be a mapping with 'provider: NAME' and that provider's "
                    "options"
                )
        rest["envs"] = envs
        return rest
