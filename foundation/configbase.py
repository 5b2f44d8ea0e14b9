"""Strict TOML configuration: unknown keys are errors and every error names its key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

CREDENTIAL_PREFIX = "credential:"

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message names the key and why."""


class StrictModel(BaseModel):
    """Base for all configuration sections: unknown keys are rejected, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def format_validation_error(source: str, exc: ValidationError) -> str:
    """Render pydantic errors as ``source: key.path: reason`` lines a technician can act on."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: {key}: {reason}")
    return "\n".join(lines)


def load_toml(path: str | os.PathLike[str], model: type[M]) -> M:
    """Read a TOML file and validate it against ``model``; raise :class:`ConfigError` on any problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return validate(data, model, str(p))


def validate(data: dict, model: type[M], source: str = "config") -> M:
    """Validate a mapping against ``model``, raising :class:`ConfigError` with key-level messages."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def resolve_path(value: str | os.PathLike[str], base: Path | None = None) -> Path:
    """Resolve a configured file path.

    ``credential:NAME`` reads from ``$CREDENTIALS_DIRECTORY/NAME`` (systemd ``LoadCredential=``);
    relative paths are taken relative to ``base`` (the config file's folder) when given.
    """
    text = os.fspath(value)
    if text.startswith(CREDENTIAL_PREFIX):
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        name = text[len(CREDENTIAL_PREFIX):]
        if not cred_dir:
            raise ConfigError(f"{text}: $CREDENTIALS_DIRECTORY is not set (run under systemd LoadCredential=)")
        if "/" in name or name in ("", ".", ".."):
            raise ConfigError(f"{text}: credential name must be a plain file name")
        return Path(cred_dir) / name
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return path
