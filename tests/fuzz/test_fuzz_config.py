"""Config loaders (``edge.toml``, ``central.toml``) under arbitrary files: a config or a :class:`ConfigError` whose
message names the file, never a traceback of another type.

Three kinds of input: random text and bytes; character-level mutations of the valid sample files; and the
valid files with one key set to a value of any TOML type (the strict models must name the key).
"""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from pathlib import Path

import tomli_w
from hypothesis import example, given
from hypothesis import strategies as st

from central import config as central_config
from edge import config as edge_config
from foundation.configbase import ConfigError
from tests.edge.test_config import CENTRAL_TOML, EDGE_TOML
from tests.fuzz.harness import fuzz, mutated, mutated_text, no_hang

LOADERS = {"edge": (edge_config.load, EDGE_TOML), "central": (central_config.load, CENTRAL_TOML)}


def load(which: str, path: Path) -> None:
    loader, _ = LOADERS[which]
    try:
        with no_hang():
            cfg = loader(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), str(exc)[:200]
        return
    cfg.model_dump()  # a loaded config is complete and immutable-friendly
    if which == "central":
        assert cfg.database_url


def write(tmp_path: Path, data: str | bytes) -> Path:
    path = tmp_path / "fuzz.toml"
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8", "surrogatepass"))
    else:
        path.write_bytes(data)
    return path


@fuzz(200)
@given(st.sampled_from(sorted(LOADERS)), st.text(max_size=300) | st.binary(max_size=300))
@example("edge", "[device]\nid = 1e999\n")
@example("central", "a = [" * 2000)  # deeper than tomllib's recursion limit
@example("central", "[" * 2000)
@example("edge", b"\xef\xbb\xbf[device]\n")  # a byte-order mark
@example("central", "\ud800 = 1")
def test_fuzz_arbitrary_text(tmp_path: Path, which: str, data: str | bytes) -> None:
    load(which, write(tmp_path, data))


@fuzz(300)
@given(st.data())
def test_fuzz_mutated_files(tmp_path: Path, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(sorted(LOADERS)))
    text = LOADERS[which][1]
    if data.draw(st.booleans()):
        load(which, write(tmp_path, data.draw(mutated_text(text, alphabet="[]=\"'.#\n 0123456789-_abcxyz{},", max_ops=3))))
    else:
        load(which, write(tmp_path, data.draw(mutated(text.encode(), max_ops=3))))


toml_values = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["credential:x", "credential:../etc/passwd", "/", "", "sqlite:", "postgresql://", "\x00"])
    | st.datetimes(timezones=st.none() | st.just(dt.UTC)) | st.dates() | st.times(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8)


def _paths(doc: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in doc.items():
        out.append(prefix + (k,))
        if isinstance(v, dict):
            out += _paths(v, prefix + (k,))
    return out


@fuzz(300)
@given(st.data())
def test_fuzz_any_value_for_any_key(tmp_path: Path, monkeypatch, data: st.DataObject) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    which = data.draw(st.sampled_from(sorted(LOADERS)))
    doc = copy.deepcopy(tomllib.loads(LOADERS[which][1]))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_paths(doc) + [("new",), ("device", "new"), ("mqtt", "new")]))
        node = doc
        for k in where[:-1]:
            node = node.setdefault(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[where[-1]] = data.draw(toml_values)
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return  # a value TOML cannot hold
    load(which, write(tmp_path, text))
