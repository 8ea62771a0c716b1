"""JSON Schema of ``ductwork.yaml``, with every installed provider's options.

Editors (VS Code's YAML extension, JetBrains) complete and check the file from it: point
``# yaml-language-server: $schema=ductwork.schema.json`` at the output of
``ductwork config schema``.
"""

from __future__ import annotations

from typing import Any

from ductwork.config.models import SECTIONS, Product
from ductwork.errors import DuctworkError

__all__ = ["json_schema"]


def json_schema() -> dict[str, Any]:
    """The schema; providers whose SDK is missing are described by name only."""
    from ductwork.plugins import get_registry

    registry = get_registry()
    schema = Product.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for section, model in SECTIONS.items():
        variants: list[dict[str, Any]] = []
        for name in registry.names(model.kind):
            try:
                options = registry.get(model.kind, name).Options.model_json_schema()
            except DuctworkError:
                options = {"type": "object", "additionalProperties": True}
            options = dict(options)
            for sub, body in options.pop("$defs", {}).items():
                defs.setdefault(sub, body)
            props = dict(options.get("properties", {}))
            props["provider"] = {"const": name, "description": f"{model.kind} provider {name!r}"}
            options["properties"] = props
            options["required"] = ["provider", *options.get("required", [])]
            options["title"] = f"{model.kind}:{name}"
            variants.append(options)
        env_schema: dict[str, Any] = {
            "description": "settings of one environment: 'provider' and its options",
            "oneOf": variants or [{"type": "object"}],
        }
        resource = defs[model.__name__]
        resource.get("properties", {}).pop("envs", None)
        resource["additionalProperties"] = env_schema
        schema["properties"][section] = {
            "type": "object",
            "description": f"{section} resources by tag",
            "additionalProperties": {"$ref": f"#/$defs/{model.__name__}"},
        }
    schema["patternProperties"] = {"^x-": {"description": "ignored: a place for anchors"}}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ductwork product config"
    return schema
