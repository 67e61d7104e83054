"""One typed config system for every job: pydantic models that refuse unknown keys by name, one way to tell what
changed between two configs, and one content hash.

    class SourceConfig(Config):
        kind: str
        n: int = 8

    config = SourceConfig.from_values(yaml.safe_load(text), where="config.parts[0].sources[1]")

Errors name the setting and the fix: `config.parts[0]: unknown setting(s) ['max_round']. Fix: use only [...]`.
The content hash covers only settings that differ from their defaults, so adding a setting with a default leaves
the hash of every existing config unchanged (a corpus or run made before still resumes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _known_settings(cls, values: Any) -> Any:
        if isinstance(values, dict):
            unknown = sorted(set(values) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown setting(s) {unknown}. Fix: use only {sorted(cls.model_fields)}")
        return values

    @classmethod
    def from_values(cls, values: Any, where: str = "config") -> Self:
        """The config from plain values (parsed YAML): a ValueError names the first bad setting by its path."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise ValueError(describe(e, where)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples), as YAML and JSON write them."""
        return self.model_dump(mode="json")

    def content_hash(self, exclude: Any = None) -> str:
        """16 hex digits of sha256 over the settings that differ from their defaults (less `exclude`)."""
        content = self.model_dump(mode="json", exclude_defaults=True, exclude=exclude)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def describe(error: ValidationError, where: str) -> str:
    """A pydantic error as one line: the setting's path, what is wrong, and the fix where we know it."""
    missing = [e for e in error.errors() if e["type"] == "missing"]
    if missing:
        parent = _path(where, missing[0]["loc"][:-1])
        names = sorted(str(e["loc"][-1]) for e in missing if e["loc"][:-1] == missing[0]["loc"][:-1])
        return f"{parent}: setting(s) {names} are required. Fix: add them"
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    return f"{_path(where, first['loc'])}: {message}"


def _path(where: str, loc: tuple) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def differences(saved: Config, requested: Config, ignore: set[str] = frozenset()) -> list[str]:
    """`path: saved X, now Y` for every setting that differs, nested ones by their dotted path."""
    return _differences(saved.to_dict(), requested.to_dict(), ignore, "")


def _differences(saved: Any, requested: Any, ignore: set[str], prefix: str) -> list[str]:
    if isinstance(saved, dict) and isinstance(requested, dict):
        out = []
        for key in sorted(set(saved) | set(requested)):
            if f"{prefix}{key}" not in ignore:
                out += _differences(saved.get(key), requested.get(key), ignore, f"{prefix}{key}.")
        return out
    return [] if saved == requested else [f"{prefix.rstrip('.')}: saved {saved!r}, now {requested!r}"]
