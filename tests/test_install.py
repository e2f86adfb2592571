"""What `make setup` and environment.yml install, checked against what the code needs.

A module the code imports but pyproject.toml does not declare works only while another package happens to pull it in
(threadpoolctl came with scikit-learn); a declared one nothing imports is a download for nothing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CODE = ("elr_mri", "preprocess", "scripts", "bench")


def _name(requirement: str) -> str:
    """`scikit-learn>=1.4` → `scikit-learn`, normalised as pip compares names."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _imports(folders: tuple[str, ...]) -> set[str]:
    """The absolute imports (full dotted names) of every Python file under `folders`."""
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module)
    return found


def _undeclared(folders: tuple[str, ...], declared: set[str]) -> list[str]:
    """Third-party top-level modules imported under `folders` that no declared distribution provides."""
    own = {"elr_mri", "preprocess"} | {path.stem for folder in folders for path in (ROOT / folder).rglob("*.py")}
    providers = importlib.metadata.packages_distributions()
    tops = {name.split(".")[0] for name in _imports(folders)} - own - set(sys.stdlib_module_names)
    return sorted(top for top in tops if not {_name(dist) for dist in providers.get(top, [top])} & declared)


def test_every_module_the_code_imports_is_declared() -> None:
    declared = {_name(requirement) for requirement in _pyproject()["project"]["dependencies"]}
    assert not _undeclared(CODE, declared), "imported, not in pyproject.toml's dependencies"


def test_every_module_the_tests_import_is_declared() -> None:
    project = _pyproject()["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    declared = {_name(requirement) for requirement in requirements}
    assert not _undeclared(("tests",), declared), "imported by tests, not in dependencies or the dev extra"


def test_every_declared_dependency_is_imported() -> None:
    imported = _imports(CODE)
    tops = {name.split(".")[0] for name in imported}
    provided: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(_name(dist), set()).add(module)
    names = [_name(requirement) for requirement in _pyproject()["project"]["dependencies"]]
    unused = [name for name in names if not provided.get(name, set()) & tops]
    assert not unused, "declared in pyproject.toml, imported nowhere"


def test_environment_yml_installs_what_make_setup_does() -> None:
    """The conda path: the Makefile's torch, then the package with its dev extra, on a Python requires-python takes;
    no pin of its own (numpy's and scipy's live in pyproject.toml only)."""
    import yaml

    conda, pip = [], []
    for entry in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]:
        conda, pip = (conda + [entry], pip) if isinstance(entry, str) else (conda, pip + entry["pip"])
    torch = re.search(r"^TORCH_SPEC \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert pip == [torch, "-e .[dev]"] and f"`{torch}`" in (ROOT / "README.md").read_text()
    python = next(entry.removeprefix("python=") for entry in conda if entry.startswith("python="))
    lowest, refused = _pythons()
    assert lowest <= tuple(map(int, python.split("."))) < refused
    assert sorted(conda) == ["pip", f"python={python}"]


def _pythons() -> tuple[tuple[int, int], tuple[int, int]]:
    """requires-python `>=3.10,<3.14` as the lowest Python it takes and the first it refuses."""
    bounds = re.fullmatch(r">=(\d+)\.(\d+),<(\d+)\.(\d+)", _pyproject()["project"]["requires-python"])
    assert bounds, "requires-python is not '>=X.Y,<X.Z'"
    numbers = tuple(map(int, bounds.groups()))
    return numbers[:2], numbers[2:]


def test_requires_python_refuses_a_python_antspyx_has_no_wheel_for() -> None:
    """antspyx 0.6.3 has no wheel for Python 3.14, nor has any scipy below antspyx's pin of 1.16: there pip would
    build both from source (scipy needs a Fortran compiler, antspyx ITK and ANTs), where README said "3.10 or newer".
    Lift the bound, here and in README, once antspyx ships a 3.14 wheel and a scipy it takes has one."""
    lowest, refused = _pythons()
    assert refused <= (3, 14), "antspyx and scipy<1.16 have no wheel for Python 3.14"
    readme = (ROOT / "README.md").read_text()
    stated = f"Python {lowest[0]}.{lowest[1]} to {refused[0]}.{refused[1] - 1}"
    assert stated in readme and f"`python3` ({stated.removeprefix('Python ')}:" in readme, stated


def _release(version: str) -> tuple[int, ...]:
    """`1.26` and `1.26.0` as one release (trailing zeros dropped), as pip compares them."""
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_the_lower_bounds_are_the_versions_the_readme_says_were_tested() -> None:
    """A bound raised or lowered without the README's table (or the table without the bound) claimed a test that no
    one ran: pandas>=2.1 was declared where nilearn takes no pandas older than 2.2."""
    section = (ROOT / "README.md").read_text().split("### Lowest versions tested\n", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| ([a-z-]+) \| ([\d.]+(?: \(bound: [\d.]+\))?) \|$", section, re.M))
    floors = {_name(requirement): re.search(r">=([\d.]+)", requirement).group(1)
              for requirement in _pyproject()["project"]["dependencies"]}
    assert sorted(rows) == sorted(floors), "a dependency missing from the README's table, or one it has no longer"
    for name, tested in rows.items():
        bound = re.search(r"\(bound: ([\d.]+)\)", tested)
        assert _release(bound.group(1) if bound else tested.split()[0]) == _release(floors[name]), name


def _make_setup(folder: Path, *options: str) -> subprocess.CompletedProcess:
    """`make setup` run by the project's Makefile in `folder`, pip reaching no index (nothing can be installed)."""
    with socket.socket() as unreachable:  # bound, never listening: a connection is refused at once
        unreachable.bind(("127.0.0.1", 0))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "MAKE", "MFLAGS"))}
        env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_RETRIES": "0",
                "PIP_INDEX_URL": f"http://127.0.0.1:{unreachable.getsockname()[1]}/simple"}
        return subprocess.run(["make", "-f", str(ROOT / "Makefile"), "setup", *options], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=300)


def _project_needing(folder: Path, requires_python: str | None = None) -> Path:
    """`folder` with the project's pyproject.toml, there with `requires_python` as its requires-python if given."""
    text = (ROOT / "pyproject.toml").read_text()
    if requires_python is not None:
        text = re.sub(r'requires-python = "[^"]*"', f'requires-python = "{requires_python}"', text)
    (folder / "pyproject.toml").write_text(text)
    return folder


def _first_line_refusing_this_python(folder: Path) -> str:
    """The Pythons `make setup PYTHON=<this one>` in `folder` says elr-mri needs, checking that it refused in one
    line before making a .venv."""
    result = _make_setup(folder, f"PYTHON={sys.executable}")
    assert result.returncode != 0 and not (folder / ".venv").exists()
    refusal = re.fullmatch(f"make setup: {re.escape(sys.executable)} is Python {re.escape(platform.python_version())}; "
                           r"elr-mri needs (.+): make setup PYTHON=<a python3 in that range>", result.stderr.splitlines()[0])
    assert refusal, result.stderr
    return refusal.group(1)


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_setup_refuses_a_python_older_than_requires_python_in_one_line(tmp_path: Path) -> None:
    """A too old python3 stopped at torch's wheel ("No matching distribution found for torch==2.13.0"), having made a
    .venv that every later run, even one given a newer PYTHON, kept."""
    newer = (sys.version_info.major, sys.version_info.minor + 1)
    folder = _project_needing(tmp_path, f">={newer[0]}.{newer[1]}")
    assert _first_line_refusing_this_python(folder) == f"{newer[0]}.{newer[1]} or newer"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / ".venv")], check=True)
    result = _make_setup(folder)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].endswith(f"needs {newer[0]}.{newer[1]} or newer: rm -rf .venv, then make "
                                                  "setup PYTHON=<a python3 in that range>")
    shutil.rmtree(folder / ".venv")
    result = _make_setup(folder, "PYTHON=no-such-python3")
    assert result.stderr.splitlines()[0] == ("make setup: no no-such-python3 on PATH: install Python 3, or name one: "
                                             "make setup PYTHON=/path/to/python3")


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_setup_refuses_a_python_newer_than_requires_python_allows_before_installing_torch(tmp_path: Path) -> None:
    """On a Python past requires-python's upper bound (3.14: no antspyx or scipy<1.16 wheel), setup installed torch
    and only then met pip's refusal of the package, or pip building scipy and antspyx from source."""
    lowest = (sys.version_info.major, sys.version_info.minor - 1)
    folder = _project_needing(tmp_path, f">={lowest[0]}.{lowest[1]},<{lowest[0]}.{lowest[1] + 1}")
    assert _first_line_refusing_this_python(folder) == f"{lowest[0]}.{lowest[1]} to {lowest[0]}.{lowest[1]}"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_setup_completes_a_venv_left_without_pip_and_ends_a_failed_pip_with_what_to_do(tmp_path: Path) -> None:
    """A python3 without ensurepip (Debian's without python3-venv) leaves a .venv with no pip, and `uv venv` makes one:
    every later run stopped at "No module named pip". pip is added, what the .venv holds kept (a CUDA torch, say). And
    pip's own last line for an index out of reach, "No matching distribution found for torch==2.13.0", reads as if
    there were no such release."""
    folder = _project_needing(tmp_path)
    python = folder / ".venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / ".venv")], check=True)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "kept_module.py").write_text("")
    result = _make_setup(folder, f"PYTHON={sys.executable}")
    assert result.returncode != 0 and "No module named pip" not in result.stderr
    subprocess.run([python, "-c", "import kept_module, pip"], check=True)
    assert result.stderr.splitlines()[-2].startswith("make setup: pip could not install torch==2.13.0 (above). pip's "
                                                     '"from versions: none" means that its package index was out of '
                                                     "reach")


def _setuptools_short_of_the_build_floor(installed: str | None) -> str | None:
    """Why this environment's setuptools (`installed`, None: none) cannot build the wheel offline, or None where it
    can. Offline means without build isolation, so with this environment's setuptools, and pyproject's license
    expression needs the setuptools>=77 its build-system asks for. A Python 3.10/3.11 venv comes with setuptools 65
    or 66, which only torch 2.13's own requirement lifted: with an older torch (pyproject allows 2.4.1) the wheel
    tests failed with pip's "non-zero exit status 1" and no reason."""
    floor = next(requirement for requirement in _pyproject()["build-system"]["requires"]
                 if _name(requirement) == "setuptools")
    lowest = re.fullmatch(r"setuptools>=([\d.]+)", floor)
    assert lowest, f"build-system.requires {floor!r} is not 'setuptools>=X'"
    if installed is not None and _release(re.match(r"[\d.]*\d", installed).group()) >= _release(lowest.group(1)):
        return None
    return (f"building the wheel offline uses this environment's setuptools ({installed or 'none'}); pyproject "
            f"needs {floor}: `pip install '{floor}'` to run this test")


def _wheel(folder: Path) -> Path:
    """The wheel pip builds from a copy of the project's packaged files (no build/ left in the project), offline."""
    try:
        installed: str | None = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    reason = _setuptools_short_of_the_build_floor(installed)
    if reason:
        pytest.skip(reason)
    source = folder / "source"
    for name in ("elr_mri", "preprocess", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(folder / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    return next((folder / "wheel").glob("elr_mri-*.whl"))


def test_the_wheel_tests_skip_where_setuptools_is_older_than_the_build_system_asks() -> None:
    """Python 3.11's venv brings setuptools 65.5.0, which refuses pyproject's license expression; a venv of 3.12 or
    newer brings none."""
    for installed in ("65.5.0", None):
        assert "pyproject needs setuptools>=77" in _setuptools_short_of_the_build_floor(installed)
    for installed in ("77.0.3", "84.2.1", "80.9.0.post1"):
        assert _setuptools_short_of_the_build_floor(installed) is None


def test_the_wheel_holds_every_module_and_the_configs(tmp_path: Path) -> None:
    """A user who pip-installs elr-mri has no repository: `--config configs/digits/elr_sym40.yaml`, the example of
    `elr-mri --help`, found nothing, since the wheel held the two packages' modules only."""
    names = set(zipfile.ZipFile(_wheel(tmp_path)).namelist())
    modules = {path.relative_to(ROOT).as_posix() for name in ("elr_mri", "preprocess")
               for path in (ROOT / name).rglob("*.py")}
    configs = {f"elr_mri/{path.relative_to(ROOT).as_posix()}" for path in (ROOT / "configs").rglob("*.yaml")}
    assert modules <= names and configs <= names
    version = _pyproject()["project"]["version"]  # nothing else: no tests/, bench/ or scripts/ beside the packages
    assert {name.split("/")[0] for name in names} == {"elr_mri", "preprocess", f"elr_mri-{version}.dist-info"}
    folders = {f"elr_mri.configs.{path.name}" for path in (ROOT / "configs").iterdir() if path.is_dir()}
    assert folders <= set(_pyproject()["tool"]["setuptools"]["packages"]), "a configs/ folder setuptools warns of"


def test_a_checkout_run_outside_the_project_reads_its_configs_saying_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`make setup` installs elr-mri editable, which holds no elr_mri/configs: run from a folder of one's own, the
    `--config configs/...` and `--mapping configs/nacc/...` that README and `--help` show found no file, where a wheel
    reads its copy. The checkout's configs/ stands in for that copy."""
    from elr_mri.shipped import shipped_copy

    monkeypatch.chdir(tmp_path)
    assert shipped_copy(Path("configs/nacc/nacc_mapping.yaml")) == ROOT / "configs" / "nacc" / "nacc_mapping.yaml"
    assert capsys.readouterr().err == (f"note: no configs/nacc/nacc_mapping.yaml in {tmp_path}; reading the copy in "
                                       f"elr-mri's checkout, {ROOT / 'configs' / 'nacc' / 'nacc_mapping.yaml'}\n")
    (tmp_path / "configs" / "nacc").mkdir(parents=True)
    (tmp_path / "configs" / "nacc" / "nacc_mapping.yaml").write_text("columns: {}\n")
    assert shipped_copy(Path("configs/nacc/nacc_mapping.yaml")) == Path("configs/nacc/nacc_mapping.yaml")  # the user's
    assert shipped_copy(Path("configs/absent.yaml")) == Path("configs/absent.yaml")  # left to the missing file's line


def test_a_misspelt_config_of_elr_mris_own_is_refused_naming_where_they_are_and_the_nearest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a folder of one's own (a pip install's or this checkout's), `--config configs/digits/elr_sym4.yaml`
    said "config file not found" alone: neither where elr-mri's configs are nor the name meant."""
    from elr_mri.config import ConfigError, load_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("configs/digits/elr_sym4.yaml")
    assert str(info.value) == (f"config file not found: configs/digits/elr_sym4.yaml (pass an existing YAML file to "
                               f"--config; elr-mri's own configs are in {ROOT / 'configs'}, the nearest: "
                               f"configs/digits/elr_sym40.yaml)")
    with pytest.raises(ConfigError, match=r"^config file not found: my/run.yaml \(pass an existing YAML file to "
                                          r"--config\)$"):
        load_config("my/run.yaml")


def test_a_preprocess_module_of_the_users_own_is_named_when_it_hides_elr_mris(tmp_path: Path) -> None:
    """elr_mri imports its `preprocess` package by that plain name: a notebook started in a folder holding a
    preprocess.py of its own failed on `import elr_mri.losses` with "No module named 'preprocess.signals';
    'preprocess' is not a package". A folder named preprocess without __init__.py (a data folder) hides nothing."""
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "preprocess.py").write_text("")
    (tmp_path / "data" / "preprocess").mkdir(parents=True)
    hidden = subprocess.run([sys.executable, "-c", "import elr_mri.losses"], cwd=tmp_path / "own",
                            capture_output=True, text=True)
    assert hidden.returncode == 1 and hidden.stderr.splitlines()[-1] == (
        f"ImportError: elr_mri: `import preprocess` finds {tmp_path / 'own' / 'preprocess.py'}, which hides elr-mri's "
        f"own package of that name ({ROOT / 'preprocess'}); rename yours, or start Python in another folder")
    subprocess.run([sys.executable, "-c", "import elr_mri, preprocess.user_errors"], cwd=tmp_path / "data", check=True)


@pytest.mark.slow
def test_an_installed_elr_mri_trains_from_a_shipped_config_outside_the_repository(tmp_path: Path) -> None:
    """The wheel installed (not editable) into a new venv that reads this one's dependencies, run from a folder
    without configs/: the README's `--config configs/...` reads the installed copy, saying so."""
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment's site-packages for the dependencies (a path line: its editable hook's .pth is not run)
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp_path / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([venv / "bin" / "elr-mri", "train", "--config", "configs/digits/elr_sym40.yaml", "--set",
                             "train.epochs=1", "--set", "train.threads=1", "--out", "run"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    installed = Path(site) / "elr_mri" / "configs" / "digits" / "elr_sym40.yaml"
    note = f"note: no configs/digits/elr_sym40.yaml in {work}; reading the copy installed with elr-mri, {installed}"
    assert result.stderr.splitlines().count(note) == 1
    assert (work / "run" / "summary.json").is_file()
    # Colin27 was looked for beside the package, in lib/python3.x/shared/...: an installed one has no checkout
    result = subprocess.run([venv / "bin" / "elr-mri", "simulate-cohort", "--out", "cohort", "--anatomy", "colin27"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "beside a checkout of elr-mri, and this one is installed" in result.stderr
