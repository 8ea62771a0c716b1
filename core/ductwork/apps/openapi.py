"""Import an OpenAPI 3.0 or 3.1 document (JSON or YAML, a local file) as an app definition.

Each operation becomes an action tagged by its ``operationId`` (else ``<method>_<path>``):
path, query and header parameters become ``params``/``query``/``headers`` fields (with
``required: false`` where the spec says so); a JSON, form or multipart request body becomes
``body`` fields when its schema is an object with properties (``allOf`` of objects merged),
else ``body_schema``; the first 2xx JSON response schema becomes ``response``. Every ``$ref``
is resolved — local (``#/components/...``) and relative files — and a recursive schema is cut
at its first repetition (it accepts any value there). Cookie parameters and other body types
are skipped and reported in the result's ``notes``.

Auth: the spec's first global security requirement is mapped to an auth kind (``apiKey`` →
``token``, ``http bearer``/``basic``, ``oauth2`` client credentials) whose secrets are
``${secret:…}``/``${env:…}`` references named after the app's tag.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from ductwork.errors import ValidationError

__all__ = ["ImportedApp", "import_openapi", "load_document"]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_DROP = {
    "description",
    "example",
    "examples",
    "xml",
    "externalDocs",
    "title",
    "$comment",
    "discriminator",
    "deprecated",
}
_BODY_TYPES = (
    ("application/json", "json"),
    ("application/x-www-form-urlencoded", "form"),
    ("multipart/form-data", "multipart"),
)


@dataclass
class ImportedApp:
    """The app definition (ready for ``apps: {TAG: …}``) and what was left out."""

    definition: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def load_document(path: str | Path) -> dict[str, Any]:
    """Read an OpenAPI document (JSON or YAML); refuse anything that is not 3.0 or 3.1."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ValidationError(f"cannot read {file}: {exc.strerror}") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValidationError(f"{file} is not valid JSON or YAML: {exc}") from None
    version = str(data.get("openapi", "")) if isinstance(data, dict) else ""
    if not re.match(r"^3\.[01]\.", version):
        found = version or (data.get("swagger") if isinstance(data, dict) else None) or "none"
        raise ValidationError(f"{file}: not an OpenAPI 3.0/3.1 document (openapi: {found})")
    assert isinstance(data, dict)
    return data


class _Resolver:
    """Resolves ``$ref`` in a document (and in relative files), cutting cycles."""

    def __init__(self, document: dict[str, Any], base: Path) -> None:
        self.base = base
        self.files: dict[Path, dict[str, Any]] = {}
        self.root = document

    def _target(
        self, ref: str, doc: dict[str, Any], base: Path
    ) -> tuple[Any, dict[str, Any], Path]:
        where, _, pointer = ref.partition("#")
        if where:
            file = (base / where).resolve()
            if file not in self.files:
                self.files[file] = load_any(file)
            doc, base = self.files[file], file.parent
        node: Any = doc
        for part in [p for p in pointer.split("/") if p]:
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(key)]
            elif isinstance(node, dict) and key in node:
                node = node[key]
            else:
                raise ValidationError(f"$ref {ref!r} does not resolve")
        return node, doc, base

    def resolve(
        self,
        node: Any,
        doc: dict[str, Any] | None = None,
        base: Path | None = None,
        seen: tuple[str, ...] = (),
    ) -> Any:
        doc = self.root if doc is None else doc
        base = self.base if base is None else base
        if isinstance(node, list):
            return [self.resolve(item, doc, base, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            key = f"{base}:{ref}" if ref.startswith("#") else f"{(base / ref).resolve()}"
            if key in seen:
                return {}  # a recursive schema: any value from here down
            target, tdoc, tbase = self._target(ref, doc, base)
            siblings = {k: v for k, v in node.items() if k != "$ref"}  # 3.1 allows them
            resolved = self.resolve(target, tdoc, tbase, (*seen, key))
            if siblings and isinstance(resolved, dict):
                resolved = {**resolved, **self.resolve(siblings, doc, base, seen)}
            return resolved
        return {k: self.resolve(v, doc, base, seen) for k, v in node.items()}


def load_any(file: Path) -> dict[str, Any]:
    """A JSON or YAML file as data (for referenced files)."""
    text = file.read_text()
    data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValidationError(f"{file}: a referenced document must be a mapping")
    return data


def _clean(schema: Any) -> Any:
    """Drop documentation-only keywords, keeping the schema small."""
    if isinstance(schema, list):
        return [_clean(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        else:
            out[key] = _clean(value)
    return out


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """An ``allOf`` of object schemas as one object schema (else ``schema`` unchanged)."""
    parts = schema.get("allOf")
    if not parts or not all(isinstance(p, dict) for p in parts):
        return schema
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in [
        *(_merge_all_of(p) for p in parts),
        {k: v for k, v in schema.items() if k != "allOf"},
    ]:
        if part.get("type", "object") != "object" or set(part) & {"anyOf", "oneOf", "allOf"}:
            return schema
        merged["properties"].update(part.get("properties", {}))
        merged["required"] += [r for r in part.get("required", []) if r not in merged["required"]]
    return merged


def _field(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    if required:
        return schema
    if isinstance(schema.get("required"), list):  # keep the object's own `required` list
        return {"allOf": [schema], "required": False}
    return {**schema, "required": False}


def _tag(operation: dict[str, Any], method: str, path: str) -> str:
    op_id = operation.get("operationId")
    if isinstance(op_id, str) and op_id:
        return op_id
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method}_{slug}"


def _action(
    op: dict[str, Any], method: str, path: str, shared: list[Any], notes: list[str], tag: str
) -> dict[str, Any]:
    action: dict[str, Any] = {"method": method.upper(), "path": path}
    if op.get("summary"):
        action["summary"] = str(op["summary"])
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for param in [*shared, *op.get("parameters", [])]:
        params[(param.get("name"), param.get("in"))] = param
    parts = {"path": "params", "query": "query", "header": "headers"}
    for (name, where), param in params.items():
        if where not in parts:
            notes.append(f"{tag}: {where} parameter {name!r} skipped")
            continue
        schema = _clean(param.get("schema") or {"type": "string"})
        required = where == "path" or bool(param.get("required"))
        action.setdefault(parts[where], {})[name] = _field(schema, required)
    body = op.get("requestBody")
    if isinstance(body, dict):
        content = body.get("content", {})
        chosen = next(
            ((kind, content[mt]) for mt, kind in _BODY_TYPES if mt in content),
            next(((("json"), v) for mt, v in content.items() if mt.endswith("+json")), None),
        )
        if chosen is None:
            notes.append(f"{tag}: request body {', '.join(content)} skipped")
        else:
            kind, media = chosen
            action["request"] = kind
            schema = _merge_all_of(_clean(media.get("schema") or {}))
            props = schema.get("properties")
            if schema.get("type", "object") == "object" and isinstance(props, dict) and props:
                needed = set(schema.get("required", []))
                action["body"] = {
                    name: _field(sub, name in needed and not sub.get("readOnly"))
                    for name, sub in props.items()
                }
            else:
                action["body_schema"] = schema
    for code, response in sorted(op.get("responses", {}).items(), key=lambda kv: str(kv[0])):
        if str(code).startswith("2") and isinstance(response, dict):
            media = response.get("content", {}).get("application/json")
            if isinstance(media, dict) and media.get("schema"):
                action["response"] = _clean(media["schema"])
                break
    if op.get("security") == []:
        action["auth"] = False
    return action


def _auth(document: dict[str, Any], tag: str) -> tuple[dict[str, Any], str | None]:
    schemes = document.get("components", {}).get("securitySchemes", {})
    prefix = re.sub(r"[^A-Za-z0-9]+", "_", tag).upper()
    for requirement in document.get("security", []) or []:
        for name, scopes in requirement.items():
            scheme = schemes.get(name, {})
            kind = scheme.get("type")
            if kind == "apiKey" and scheme.get("in") in ("header", "query"):
                return {
                    "kind": "token",
                    "token": f"${{secret:{prefix}_API_KEY}}",
                    "in": scheme["in"],
                    "name": scheme.get("name", "X-Api-Key"),
                }, None
            if kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer":
                return {"kind": "bearer", "token": f"${{secret:{prefix}_TOKEN}}"}, None
            if kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
                return {
                    "kind": "basic",
                    "username": f"${{env:{prefix}_USERNAME}}",
                    "password": f"${{secret:{prefix}_PASSWORD}}",
                }, None
            flow = scheme.get("flows", {}).get("clientCredentials")
            if kind == "oauth2" and flow:
                auth = {
                    "kind": "oauth2",
                    "token_url": flow["tokenUrl"],
                    "client_id": f"${{env:{prefix}_CLIENT_ID}}",
                    "client_secret": f"${{secret:{prefix}_CLIENT_SECRET}}",
                }
                if scopes:
                    auth["scope"] = " ".join(scopes)
                return auth, None
            return {"kind": "none"}, f"security scheme {name!r} ({kind}) is not supported"
    return {"kind": "none"}, None


def _base_url(document: dict[str, Any]) -> str | None:
    for server in document.get("servers", []) or []:
        url = str(server.get("url", ""))
        for var, spec in (server.get("variables") or {}).items():
            url = url.replace(f"{{{var}}}", str(spec.get("default", "")))
        if url.startswith(("http://", "https://")):
            return url.rstrip("/")
    return None


def import_openapi(
    path: str | Path,
    *,
    tag: str,
    environments: list[str],
    base_url: str | None = None,
    auth: bool = True,
) -> ImportedApp:
    """The app definition for the document at ``path``, one env entry per environment."""
    file = Path(path)
    raw = load_document(file)
    document = _Resolver(raw, file.resolve().parent).resolve(raw)
    notes: list[str] = []
    url = base_url or _base_url(document)
    if url is None:
        raise ValidationError(f"{file}: the spec names no absolute server URL; pass --base-url")
    env_auth, note = _auth(document, tag) if auth else ({"kind": "none"}, None)
    if note:
        notes.append(note)
    actions: dict[str, Any] = {}
    for path_key, item in (document.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters", [])
        for method in METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                name = _tag(op, method, path_key)
                if name in actions:
                    name = f"{name}_{method}"
                actions[name] = _action(op, method, path_key, shared, notes, name)
    definition: dict[str, Any] = {env: {"base_url": url, "auth": env_auth} for env in environments}
    info = document.get("info", {})
    if info.get("title"):
        definition["description"] = f"{info['title']} {info.get('version', '')}".strip()
    definition["actions"] = actions
    return ImportedApp(definition, notes)
