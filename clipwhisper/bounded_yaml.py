"""YAML read with bounds: a config from a stranger cannot exhaust memory or recursion, nor hide a setting.

``safe_load`` alone builds whatever the document describes: 700 bytes of nested anchors ("billion laughs")
expand to gigabytes, an alias to its own ancestor is a cycle, 5,000 nested brackets exhaust the recursion
limit, and a key given twice silently keeps the last value. The node graph is checked before anything is built.
"""

from __future__ import annotations

import yaml

from .errors import ConfigError

MAX_BYTES = 1 << 20
MAX_VALUES = 100_000  # scalars and collections, every alias expanded
MAX_DEPTH = 64


def _check(root: yaml.Node, where: str) -> None:
    seen, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(where, [f"its aliases expand to over {MAX_VALUES:,} values; write the values out"])
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}:{node.start_mark.line + 1}", [f"nested deeper than {MAX_DEPTH} levels "
                                                                      "(or an alias inside its own anchor)"])
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, where)
            stack += [(child, depth + 1) for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]


def _check_keys(node: yaml.MappingNode, where: str) -> None:
    first: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
            continue
        line = key.start_mark.line + 1
        if key.value in first:
            raise ConfigError(f"{where}:{line}", [f"key {key.value!r} given twice (first on line {first[key.value]})"])
        first[key.value] = line


def load_bounded(text: str, where: str):
    """The document's value, or ConfigError naming ``where`` (and the line) for invalid or unbounded YAML."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise ConfigError(where, [f"over {MAX_BYTES // 2**20} MiB; a config is a short text file"])
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses unprintable characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{where}:{mark.line + 1}" if mark else where,
                          [f"invalid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    except RecursionError:
        raise ConfigError(where, [f"nested deeper than {MAX_DEPTH} levels"]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(where, [f"invalid value: {exc}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
