"""Load the box's TFLite models: look them up in ``manifest.toml``, check their SHA-256, build interpreters.

Models marked ``bundled = true`` in the manifest ship in this package; the others (MiniFASNet) are
found in a model directory provisioned on the box and are optional. A file whose hash differs from the
manifest is refused: a model is code, and a swapped one could accept anyone.

Interpreters run on ``ai-edge-litert`` (``ai_edge_litert.interpreter``), falling back to
``tflite_runtime``. An interpreter is not thread-safe: :func:`interpreter` keeps one per model per
thread (per worker), so callers never share one.

Example::

    from models_tflite.loader import interpreter
    det = interpreter("face_detection_short", threads=1)
"""

from __future__ import annotations

import hashlib
import logging
import threading
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "manifest.toml"


class ModelError(Exception):
    """A model cannot be used."""


class UnknownModel(ModelError):
    """The name is not in ``manifest.toml``."""


class ModelMissing(ModelError):
    """The model file is not where the manifest says it is."""


class ModelHashMismatch(ModelError):
    """The model file's SHA-256 differs from the manifest: refused."""


class NoInterpreter(ModelError):
    """Neither ai-edge-litert nor tflite_runtime is installed."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One manifest entry (see ``manifest.toml`` for the meaning of each field)."""

    name: str
    file: str
    sha256: str
    source: str
    license: str
    license_file: str
    input: str
    output: str
    quantization: str
    bundled: bool = True
    version: str = ""


@lru_cache(maxsize=1)
def manifest() -> dict[str, ModelSpec]:
    """All manifest entries by name."""
    with MANIFEST.open("rb") as f:
        data = tomllib.load(f)
    return {name: ModelSpec(name=name, **fields) for name, fields in data["models"].items()}


def spec(name: str) -> ModelSpec:
    """The manifest entry of ``name``; :class:`UnknownModel` if there is none."""
    try:
        return manifest()[name]
    except KeyError:
        raise UnknownModel(f"model {name!r} is not in {MANIFEST}") from None


def model_path(name: str, model_dir: Path | None = None) -> Path:
    """Where ``name`` lives: this package for bundled models, else ``model_dir``."""
    s = spec(name)
    if s.bundled:
        return PACKAGE_DIR / s.file
    if model_dir is None:
        raise ModelMissing(f"model {name!r} ({s.file}) is not bundled and no model directory is configured")
    return Path(model_dir) / s.file


def available(name: str, model_dir: Path | None = None) -> bool:
    """Whether the file of ``name`` is present (its hash is checked only on load)."""
    try:
        return model_path(name, model_dir).is_file()
    except ModelMissing:
        return False


def inventory(model_dir: Path | None = None) -> dict[str, str]:
    """Models present on this box, by name, each with the first 12 hex digits of its manifest SHA-256 (what the
    health report and the fleet dashboard show as the model version)."""
    return {name: s.sha256[:12] for name, s in manifest().items() if available(name, model_dir)}


_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_path(name: str, model_dir: Path | None = None) -> Path:
    """The path of ``name`` after checking that it exists and that its SHA-256 matches the manifest."""
    s = spec(name)
    path = model_path(name, model_dir)
    if not path.is_file():
        raise ModelMissing(f"model {name!r}: file {path} not found")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _verified_lock:
        known = _verified.get(key)
    digest = known or sha256_file(path)
    if digest != s.sha256:
        raise ModelHashMismatch(
            f"model {name!r}: {path} has SHA-256 {digest}, the manifest expects {s.sha256}; "
            "refusing to load it (replace the file with the released one)")
    with _verified_lock:
        _verified[key] = digest
    return path


def _interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        raise NoInterpreter("no TFLite interpreter: install ai-edge-litert (or tflite-runtime)") from None


def backend() -> str:
    """Name of the interpreter package in use."""
    return _interpreter_class()[1]


def load(name: str, *, model_dir: Path | None = None, threads: int = 1) -> Any:
    """A new, allocated interpreter for ``name`` (hash checked). Prefer :func:`interpreter`."""
    path = verified_path(name, model_dir)
    cls, which = _interpreter_class()
    interp = cls(model_path=str(path), num_threads=max(1, int(threads)))
    interp.allocate_tensors()
    logger.info("loaded model %s (%s) on %s with %s thread(s)", name, path.name, which, threads)
    return interp


_local = threading.local()


def interpreter(name: str, *, model_dir: Path | None = None, threads: int = 1) -> Any:
    """This thread's interpreter for ``name``: built on first use, then reused by the same thread."""
    cache: dict[tuple[str, str, int], Any] = getattr(_local, "cache", None) or {}
    _local.cache = cache
    key = (name, str(model_dir or ""), threads)
    if key not in cache:
        cache[key] = load(name, model_dir=model_dir, threads=threads)
    return cache[key]
