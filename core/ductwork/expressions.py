"""The one expression language: Jinja2's sandboxed environment with strict undefined.

Feature mappings (and, later, quota/fallback mappings) are values in which strings may hold
``{{ … }}``. A string that is exactly ``{{ expr }}`` yields the
expression's native value (an int stays an int, a mapping stays a mapping); any other string
with ``{{``/``{%`` renders to a string; everything else is a literal. Mappings are compiled once
(at config load), so a parse error or an unknown name is reported by ``config validate`` with
its place, and a run never parses text.

Names an expression may use are given when compiling (``input``, ``steps``, ``env``,
``product`` for features). :meth:`Compiled.references` lists the ``steps.<sequence>.<step>``
pairs a mapping reads, so callers can check that those steps run earlier.

Notification templates are text (:func:`compile_template`): they always render to a string,
their names are the send's ``data`` keys, and HTML ones escape what they insert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ductwork.errors import ConfigError, ValidationError

__all__ = [
    "Compiled",
    "ExpressionError",
    "Template",
    "compile_template",
    "compile_value",
    "environment",
]

_EXACT = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class ExpressionError(ConfigError):
    """An expression does not parse or uses a name it may not."""


@cache
def environment(autoescape: bool = False) -> Any:
    """The shared sandboxed environment (built once, on first use; HTML ones escape)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    class DataEnvironment(SandboxedEnvironment):
        """The sandbox, where ``a.b`` on a mapping reads its key ``b`` first.

        So a step named ``get`` or an input field named ``items`` is data, not a dict method.
        """

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, Mapping) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

    return DataEnvironment(undefined=StrictUndefined, autoescape=autoescape)


_PATH = re.compile(r"^\s*[A-Za-z_]\w*(\s*\.\s*[A-Za-z_]\w*)*\s*$")


@dataclass(frozen=True)
class _Expr:
    source: str
    native: bool
    code: Any  # a compiled expression (native) or template (string)
    # ``{{ input.user.id }}``: its names, read by plain lookups while every step is a mapping
    # holding the key (what the sandbox's getattr gives first); anything else goes to Jinja
    path: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Compiled:
    """A compiled value: literals kept, expressions compiled; render with :meth:`render`."""

    tree: Any
    names: frozenset[str] = field(default_factory=frozenset)
    refs: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def references(self) -> frozenset[tuple[str, str]]:
        """The ``(sequence, step)`` pairs read through ``steps.<sequence>.<step>``."""
        return self.refs

    def render(self, context: Mapping[str, Any], *, where: str = "expression") -> Any:
        """The value with every expression evaluated against ``context``.

        Raises:
            ValidationError: a name or attribute is undefined at run time, or the sandbox
                refused an operation; the message names ``where`` and the expression.
        """
        return _render(self.tree, context, where)

    @property
    def is_literal(self) -> bool:
        """No expression inside."""
        return not _has_expr(self.tree)


def _has_expr(tree: Any) -> bool:
    if isinstance(tree, _Expr):
        return True
    if isinstance(tree, dict):
        return any(_has_expr(v) for v in tree.values())
    if isinstance(tree, list):
        return any(_has_expr(v) for v in tree)
    return False


def _render(tree: Any, context: Mapping[str, Any], where: str) -> Any:
    if isinstance(tree, _Expr):
        if tree.path is not None:
            found: Any = context
            for name in tree.path:
                if not isinstance(found, Mapping) or name not in found:
                    break
                found = found[name]
            else:
                return found
        from jinja2 import TemplateError, Undefined, UndefinedError

        try:
            if not tree.native:
                return tree.code.render(**context)
            value = tree.code(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()  # StrictUndefined: raises
            return value
        except UndefinedError as exc:
            raise ValidationError(f"{where}: {tree.source!r}: no value ({exc})") from None
        except TemplateError as exc:
            raise ValidationError(f"{where}: {tree.source!r}: {exc}") from None
    if isinstance(tree, dict):
        return {k: _render(v, context, where) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_render(v, context, where) for v in tree]
    return tree


def compile_value(
    value: Any, *, names: Iterable[str] | None, where: str, file: str | None = None
) -> Compiled:
    """Compile every string of ``value`` (nested mappings and lists too).

    Args:
        value: a literal, a string with expressions, or a mapping/list of them.
        names: the names expressions may use at their root (``None``: any name, for
            templates whose names are the data they are given).
        where: the place in the config (``features.signup.sequences.create.steps.insert.input``).
        file: the config file, for the error.

    Raises:
        ExpressionError: an expression does not parse or uses an unknown name.
    """
    allowed = None if names is None else frozenset(names)
    used: set[str] = set()
    refs: set[tuple[str, str]] = set()

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, str):
            return _compile_str(node, allowed, path, file, used, refs)
        if isinstance(node, Mapping):
            return {str(k): walk(v, f"{path}.{k}") for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    tree = walk(value, where)
    return Compiled(tree, frozenset(used), frozenset(refs))


def _compile_str(
    text: str,
    allowed: frozenset[str] | None,
    where: str,
    file: str | None,
    used: set[str],
    refs: set[tuple[str, str]],
    *,
    html: bool = False,
    as_text: bool = False,
) -> Any:
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text
    from jinja2 import TemplateSyntaxError, meta

    env = environment(html)
    exact = None if as_text else _EXACT.match(text)
    native = exact is not None and "{{" not in exact["expr"] and "}}" not in exact["expr"]
    source = f"{{{{ {exact['expr'].strip()} }}}}" if native and exact else text
    try:
        ast = env.parse(source)
        code = (
            env.compile_expression(exact["expr"], undefined_to_none=False)
            if native and exact
            else env.from_string(text)
        )
    except TemplateSyntaxError as exc:  # the message says where in the text
        raise ExpressionError(
            f"{text!r} does not parse: {exc.message}", file=file, path=where
        ) from None
    unknown = set() if allowed is None else meta.find_undeclared_variables(ast) - allowed
    if unknown and allowed is not None:
        raise ExpressionError(
            f"{text!r} uses undefined name(s) {', '.join(sorted(unknown))} "
            f"(available: {', '.join(sorted(allowed))})",
            file=file,
            path=where,
        )
    used.update(meta.find_undeclared_variables(ast))
    refs.update(_step_refs(ast))
    path = None
    if native and exact and _PATH.match(exact["expr"]):
        path = tuple(part.strip() for part in exact["expr"].split("."))
    return _Expr(text, native, code, path)


@dataclass(frozen=True)
class Template:
    """A compiled text template: :meth:`render` always gives a string."""

    source: str
    code: Any  # the compiled expression, or the text itself when it holds none

    def render(self, data: Mapping[str, Any], *, where: str = "template") -> str:
        """The text with ``data``'s values filled in.

        Raises:
            ValidationError: a name the template uses has no value in ``data`` (or the
                sandbox refused an operation); the message names ``where``.
        """
        return str(_render(self.code, data, where))


def compile_template(
    text: str, *, where: str, file: str | None = None, html: bool = False
) -> Template:
    """Compile a text template whose names are the data it will be rendered with.

    ``html=True`` escapes every inserted value (``<`` becomes ``&lt;``).

    Raises:
        ExpressionError: the template does not parse (naming ``where`` and ``file``).
    """
    code = _compile_str(text, None, where, file, set(), set(), html=html, as_text=True)
    return Template(text, code)


def _step_refs(ast: Any) -> set[tuple[str, str]]:
    """``steps.seq.step`` / ``steps['seq']['step']`` pairs in a parsed template."""
    from jinja2 import nodes

    def key(node: Any) -> tuple[Any, str | None]:
        if isinstance(node, nodes.Getattr):
            return node.node, node.attr
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            return node.node, str(node.arg.value)
        return None, None

    found: set[tuple[str, str]] = set()
    for outer in ast.find_all((nodes.Getattr, nodes.Getitem)):
        inner, step = key(outer)
        if inner is None or step is None:
            continue
        base, seq = key(inner)
        if isinstance(base, nodes.Name) and base.name == "steps" and seq is not None:
            found.add((seq, step))
    return found
