"""Read ``ductwork.yaml`` strictly: duplicate keys refused, YAML 1.2 booleans.

PyYAML reads YAML 1.1, where ``no``, ``on``, ``off``, ``yes`` and ``y`` are booleans, and it lets
the last of two equal mapping keys win without a word. A product file that selects production
backends must not silently lose a pasted block, nor turn an environment named ``no`` into
``False``. This module keeps PyYAML (its parser and its line marks) and changes two things:
only ``true``/``false`` (any case YAML 1.2 allows) are booleans, and the node tree is checked
for duplicate keys, with their path and both lines, before anything is built from it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ductwork.errors import ConfigError

__all__ = ["load_yaml"]

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader whose booleans are YAML 1.2's (``true``/``false`` only)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str, *, file: str | None = None) -> Any:
    """Parse ``text``; a syntax error or a duplicate key raises :class:`ConfigError`."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise ConfigError(f"{where}invalid YAML: {exc.problem}", file=file) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", file=file) from None
        if node is None:
            return None
        _refuse_duplicates(node, (), set(), file)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicates(
    node: yaml.Node, path: tuple[str, ...], seen: set[int], file: str | None
) -> None:
    if id(node) in seen:  # an alias: its anchor's node was checked where it was defined
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if key.tag == _MERGE_TAG or not isinstance(key, yaml.ScalarNode):
                _refuse_duplicates(value, path, seen, file)
                continue
            line = key.start_mark.line + 1
            name = str(key.value)
            same = (key.tag, name)  # 1 and "1" are different keys, as YAML reads them
            if same in lines:
                where = ".".join((*path, name))
                raise ConfigError(
                    f"duplicate key {where!r} at lines {lines[same]} and {line}: the second "
                    "would silently replace the first; keep one (for shared settings use an "
                    "anchor under an 'x-' key and a merge key '<<: *name')",
                    file=file,
                )
            lines[same] = line
            _refuse_duplicates(value, (*path, name), seen, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicates(item, (*path, str(index)), seen, file)
