"""Loading YAML configuration into pydantic models, once, with errors that name the bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

C = TypeVar("C", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of configuration models: unknown keys are errors (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _explain(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check its spelling against the documented options"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def build_config(
    model: type[C],
    data: dict[str, Any],
    source: str = "configuration",
    context: dict[str, Any] | None = None,
) -> C:
    """Validate ``data`` as ``model`` (``context`` is handed to its validators); a
    :class:`ConfigError` names every bad key."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None


def load_config(
    model: type[C], path: Path | str | None, overrides: dict[str, Any] | None = None
) -> C:
    """Read a YAML file (if given), apply command-line ``overrides`` on top, validate once."""
    data: dict[str, Any] = {}
    source = "command-line options"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of keys, not {type(loaded).__name__}")
        data = loaded
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    return build_config(model, data, source)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value
