"""Box and central installs apart: ``pip install .`` pulls no central-only package, and every box module
imports with the central packages absent.

The dependency closure is resolved from setup.py's own metadata (built fresh into a temporary folder) and
the installed distributions' ``Requires-Dist``, markers evaluated for this machine, as pip would.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

# What only the central service needs; the box must never pull any of them.
CENTRAL_PACKAGES = {"starlette", "uvicorn", "jinja2", "psycopg", "psycopg-binary"}
# Modules that are the central service's web servers (they import starlette / uvicorn at the top).
CENTRAL_MODULES = {"central.dashboard.app", "central.dashboard.server", "central.enrollment_server"}
# Every package; the central one imports too (its ingest and store run without the web packages), except its
# web servers (CENTRAL_MODULES).
PACKAGES = ("foundation", "edge", "drivers", "models_tflite", "mqtt", "provisioning", "central", "demo")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def requires(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``Requires-Dist`` of the project as setup.py says now (not as it was when the venv was made)."""
    out = tmp_path_factory.mktemp("egg")
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out)], cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    (info,) = out.glob("*.egg-info")
    return md.PathDistribution(info).requires or []


def _wanted(req: Requirement, extras: set[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras | {""}))


def closure(requires: list[str], extras: set[str]) -> set[str]:
    """Every distribution ``pip install .[extras]`` brings in, by normalised name."""
    todo = [r for r in map(Requirement, requires) if _wanted(r, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    while todo:
        req = todo.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        dist = md.distribution(req.name)  # the test venv has the box, central and test extras installed
        todo += [d for d in map(Requirement, dist.requires or []) if _wanted(d, set(req.extras))]
    return names


def test_box_install_pulls_no_central_package(requires: list[str]) -> None:
    box = closure(requires, set())
    central = closure(requires, {"central"})
    central_only = central - box
    print("box:", " ".join(sorted(box)))
    print("central adds:", " ".join(sorted(central_only)))
    assert not box & CENTRAL_PACKAGES, f"the box pulls central-only packages: {sorted(box & CENTRAL_PACKAGES)}"
    assert central_only >= CENTRAL_PACKAGES
    assert {"numpy", "cryptography", "zxing-cpp", "tesserocr", "ai-edge-litert", "paho-mqtt"} <= box
    assert central <= closure(requires, {"test"})  # the test extra sets up the central service too


def test_box_modules_import_without_central_packages(requires: list[str]) -> None:
    central_only = closure(requires, {"central"}) - closure(requires, set())
    blocked = sorted(mod for mod, dists in md.packages_distributions().items()
                     if dists and all(_norm(d) in central_only for d in dists) and mod.isidentifier())
    assert {"starlette", "uvicorn", "jinja2", "psycopg"} <= set(blocked)
    code = f"""
import importlib, json, pkgutil, sys
BLOCKED = set({blocked!r})
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (central only)", name=name)
sys.meta_path.insert(0, Block())
done, central_failed = [], []
for top in {PACKAGES!r}:
    pkg = importlib.import_module(top)
    for info in pkgutil.walk_packages(pkg.__path__, top + "."):
        if info.name.endswith("__main__"):
            continue
        if info.name in {sorted(CENTRAL_MODULES)!r}:
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as exc:
                central_failed.append(exc.name.split(".")[0])
            continue
        importlib.import_module(info.name)
        done.append(info.name)
print(json.dumps({{"imported": done, "central_failed": central_failed}}))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert {"demo.site", "edge.station", "mqtt.uplink", "central.ingest", "central.store",
            "provisioning.box", "drivers.camera"} <= set(out["imported"])
    # the blocker works: the central web servers really cannot load without their packages
    assert len(out["central_failed"]) == len(CENTRAL_MODULES)


def test_central_command_on_a_box_says_how_to_add_the_central_packages(tmp_path) -> None:
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in {'starlette', 'uvicorn', 'jinja2', 'psycopg'}:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from central.cli import main\n"
            f"sys.exit(main(['dashboard', '--config', {str(tmp_path / 'central.toml')!r}]))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "not installed: this is a box install" in run.stderr and "--central" in run.stderr
