"""The package as a user installs it: a wheel, the base install, then only the ``server`` extra.

The wheel is built from a copy of the packaged sources (not this checkout: the venv must not
see it). Its dependencies come offline from this test environment: each distribution the
wheel's metadata asks for (followed through their own requirements, for the extras named) is
packed back into a wheel, and pip installs from those alone (``--no-index``) into a fresh
venv without system site-packages. pip resolves the wheel's own metadata, so a dependency
missing from an extra is missing from the venv, and the server then fails to start.
"""

from __future__ import annotations

import base64
import csv
import email.parser
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import zipfile
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.server.helpers import REPO, LiveServer

pytestmark = pytest.mark.slow

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
NOT_FOR_A_SERVER = ["torch", "transformers", "trl", "accelerate", "peft", "datasets", "streamlit", "plotly", "pandas"]
# Written by pip at install time, not part of a wheel.
INSTALL_RECORDS = {"INSTALLER", "RECORD", "REQUESTED", "direct_url.json"}


def build_wheel(work: Path) -> Path:
    """The project's wheel, built from a copy of what it packages (pyproject's package list)."""
    src, dest = work / "src", work / "dist"
    src.mkdir()
    includes = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for top in sorted(REPO.iterdir()):
        if top.is_dir() and any(fnmatch(top.name, pattern) for pattern in includes["include"]):
            shutil.copytree(top, src / top.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(src),
         "--wheel-dir", str(dest)],
        check=True, env=_pip_env(), capture_output=True, text=True,
    )
    (wheel,) = dest.glob("*.whl")
    return wheel


def requirements_of(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode()).get_all("Requires-Dist") or []


def closure(requires: list[str], extras: set[str]) -> list[metadata.Distribution]:
    """The installed distributions these requirements (for ``extras``) pull in, transitively."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(line), extras) for line in requires]
    while todo:
        req, wanted = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in wanted | {""}):
            continue
        name = canonicalize_name(req.name)
        if name == canonicalize_name(PROJECT):  # the all extra names the others
            todo += [(Requirement(line), set(req.extras)) for line in requires]
            continue
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        dist = found.setdefault(name, metadata.distribution(req.name))
        todo += [(Requirement(line), set(req.extras)) for line in dist.requires or []]
    return list(found.values())


def repack(dist: metadata.Distribution, dest: Path) -> Path:
    """An installed distribution packed back into a wheel (its files under site-packages)."""
    files = [f for f in dist.files or [] if f.parts[0] != ".." and "__pycache__" not in f.parts]
    (dist_info,) = {f.parts[0] for f in files if f.parts[0].endswith(".dist-info")}
    tags = email.parser.Parser().parsestr(dist.read_text("WHEEL") or "").get_all("Tag") or ["py3-none-any"]
    # The compressed tag set of a wheel's name: py2-none-any + py3-none-any = py2.py3-none-any.
    tag = "-".join(".".join(dict.fromkeys(t.split("-")[i] for t in tags)) for i in range(3))
    wheel = dest / f"{canonicalize_name(dist.metadata['Name']).replace('-', '_')}-{dist.version}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            if f.parts[0] == dist_info and f.name in INSTALL_RECORDS:
                continue
            data = Path(dist.locate_file(f)).read_bytes()
            zf.writestr(f.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([f.as_posix(), f"sha256={digest}", len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        zf.writestr(f"{dist_info}/RECORD", record.getvalue())
    return wheel


def _pip_env() -> dict[str, str]:
    """pip told nothing by this machine's configuration (indexes, find-links, constraints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def pip_install(python: Path, wheelhouse: Path, target: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile", "--no-index",
         "--find-links", str(wheelhouse), target],
        env=_pip_env(), capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def run_in(venv: Path, cwd: Path, code: str) -> dict:
    """``code`` (which prints one JSON line) run by the venv's python, outside this checkout."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], cwd=cwd, env=_outside_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _outside_env() -> dict[str, str]:
    # Nothing of this checkout or of this test run's settings: the installed package alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("E2H_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "PYTHONNOUSERSITE": "1"}


def e2h(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "e2h"), *args], cwd=cwd, env=_outside_env(), capture_output=True, text=True, timeout=120
    )


def assert_needs(done: subprocess.CompletedProcess, extra: str, dependency: str) -> None:
    """A command whose extra is missing exits 2 naming what is missing and the pip command."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert dependency in done.stderr and f"pip install '{PROJECT}[{extra}]'" in done.stderr, done.stderr


class InstalledServer(LiveServer):
    """``e2h server`` from the venv's console script, started in ``cwd`` (a LiveServer otherwise)."""

    def __init__(self, venv: Path, cwd: Path, log_path: Path):
        self.venv, self.cwd = venv, cwd
        super().__init__({}, log_path)

    def start(self, wait: bool = True) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "e2h"), "server", "--port", str(self.port)],
            cwd=self.cwd, env=_outside_env(), stdout=self._log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()


def alembic_head(migrations: Path) -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(cfg).get_current_head()


FIND = """
import importlib.util, json, sys
import e2h
print(json.dumps({{"found": [m for m in {names!r} if importlib.util.find_spec(m)], "e2h": e2h.__file__,
                   "prefix": sys.prefix}}))
"""


def test_a_wheel_with_only_the_server_extra_runs_the_server(tmp_path: Path) -> None:
    started = time.monotonic()
    wheel = build_wheel(tmp_path)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for dist in closure(requirements_of(wheel), {"server"}):
        repack(dist, wheelhouse)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # The base install: the light core, the client and the CLI, without the server's packages.
    pip_install(venv / "bin" / "python", wheelhouse, str(wheel))
    base = run_in(venv, elsewhere, FIND.format(names=[*NOT_FOR_A_SERVER, "fastapi", "sqlmodel"]) + """
from e2h.config import compose
compose(["task=countdown2345"])
""")
    assert base["found"] == []
    assert base["e2h"].startswith(str(venv)), base  # the installed copy, not this checkout
    assert e2h(venv, elsewhere, "runs", "--help").returncode == 0
    assert_needs(e2h(venv, elsewhere, "server"), "server", "fastapi")

    pip_install(venv / "bin" / "python", wheelhouse, f"{wheel}[server]")
    installed = run_in(venv, elsewhere, FIND.format(names=[*NOT_FOR_A_SERVER, "fastapi", "sqlmodel", "alembic"]))
    assert installed["found"] == ["fastapi", "sqlmodel", "alembic"]  # the server's, and no training or UI
    assert_needs(e2h(venv, elsewhere, "worker", "--burst"), "train", "torch")
    assert_needs(e2h(venv, elsewhere, "dashboard"), "dashboard", "streamlit")

    server = InstalledServer(venv, elsewhere, tmp_path / "server.log")
    try:
        server.wait_ready(timeout=120)  # its first start compiles every module it imports
        db = elsewhere / "data" / "e2h.db"  # the default database, relative to where it started
        with sqlite3.connect(db) as conn:
            head = alembic_head(tmp_path / "src" / "server" / "migrations")  # those the wheel was built from
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            created = http.post("/runs", json={"name": "from-a-wheel", "config": {"task": {"name": "countdown"}}})
            assert created.status_code == 201, created.text
            run = http.get(f"/runs/{created.json()['id']}").json()
            assert (run["name"], run["status"]) == ("from-a-wheel", "queued")
            assert run["config"]["task"]["name"] == "countdown"
            assert http.get("/runs").json()["data"][0]["id"] == run["id"]
            assert "countdown" in json.dumps(http.get("/tasks").json())
            refused = http.post("/runs", json={"config": {"scheduler": {"name": "no-such-scheduler"}}})
            assert refused.status_code == 422, refused.text
    finally:
        server.stop()
    print(f"wheel, venv, base + server install, server start and checks: {time.monotonic() - started:.1f} s")
