"""Shared machinery of the config models: the frozen base model, field helpers, one-line
validation errors, and the strict YAML loader.

Owns ``_Frozen`` (the base of every config model), ``_positive_finite`` and ``_params``,
:func:`format_validation_error` (a pydantic ``ValidationError`` -> one line naming the
field), ``_validate`` (validate a mapping, raising :class:`~lrtune.errors.ConfigError`),
:func:`load_yaml` (duplicate keys refused) and ``_merge`` (overrides over file values,
nested mappings merged).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lrtune.errors import ConfigError

__all__ = ["format_validation_error", "load_yaml"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _positive_finite(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be > 0, got {value!r}")
    return value


def _params(data: Mapping[str, Any]) -> Mapping[str, Any]:
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping, got {params!r}")
    return params


# ----------------------------------------------------------------------------- errors

_BUILTIN_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "literal_error": "must be one of {expected}",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "dict_type": "must be a mapping",
    "int_from_float": "must be an integer",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}
# pydantic puts union members into the location (``function-after[_ordered(), Range]``,
# ``float``); they mean nothing to a user.
_UNION_TAG = re.compile(r"^(function-\w+\[.*\]|float|int|str|bool|[A-Z]\w*|literal\[.*\])$")
_RELATIVE_FIELD = re.compile(r"^[a-z_][\w.]* (must|is|has|takes) ")


def format_validation_error(error: ValidationError, source: str | None = None) -> str:
    """One line for the first error in ``error``: ``[source: ]field message, got value``."""
    errors = error.errors(include_url=False)
    # of several errors for one union field, the one a validator wrote says most
    first = next((e for e in errors if e["type"] == "value_error"), errors[0])
    loc = ".".join(str(part) for part in first["loc"] if not _UNION_TAG.match(str(part)))
    kind = first["type"]
    if kind == "value_error":
        msg = str(first.get("ctx", {}).get("error", first["msg"]))
        if msg.startswith("must "):
            line = f"{loc} {msg}" if loc else msg
        elif _RELATIVE_FIELD.match(msg) and loc:
            line = f"{loc}.{msg}"
        else:
            line = f"{loc}: {msg}" if loc else msg
    else:
        template = _BUILTIN_MESSAGES.get(kind)
        if template is not None:
            msg = template.format(**first.get("ctx", {}))
        elif kind.endswith(("_type", "_parsing")):
            msg = "must be " + kind.rsplit("_", 1)[0].replace("_", " ").replace("bool", "a boolean")
            msg = msg.replace("be int", "be an integer").replace("be float", "be a number")
            msg = msg.replace("be string", "be a string").replace("be dict", "be a mapping")
        else:
            msg = first["msg"]
        line = f"{loc or '(top level)'} {msg}"
        if kind not in ("missing",) and "input" in first and not isinstance(first["input"], dict):
            line += f", got {first['input']!r}"
    return f"{source}: {line}" if source else line


def _validate(model: type[BaseModel], data: Mapping[str, Any], source: str | None) -> Any:
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None


MAX_FILE_BYTES = 1_000_000
"""Largest study or training file read (a study file is a few hundred bytes)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML keeps the last), and
    aliases (``*name``): a few of them nested expand to gigabytes (an "alias bomb")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in lrtune files; write the "
                "value out", event.start_mark,
            )  # fmt: skip
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; errors name the file (and line for syntax errors)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:  # bounded: /dev/zero ends here too
            text = handle.read(MAX_FILE_BYTES + 1)
        if len(text) > MAX_FILE_BYTES:
            raise ConfigError(
                f"{path}: more than {MAX_FILE_BYTES} characters, far more than a study or "
                "training file holds"
            )
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            problem = getattr(error, "problem", None) or "invalid YAML"
            raise ConfigError(f"{path}: line {mark.line + 1}: {problem}") from None
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of fields, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged
