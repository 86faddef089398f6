"""Import paths stay true after the package layout (issue 32 item 4, docs/architecture.md).

- every `rlft.x.y` path README.md and docs/*.md name resolves, and none names an old flat path;
- every old flat path (rlft/_moved.py) still imports, warns with its new path and *is* the moved module;
- the layout rules: at most 16 entries at rlft/'s top level, no two modules with one file name;
- every package imports on a fresh interpreter, and every module in one, in sorted order (no import cycle).

The checks that import rlft's heavy modules (torch, TRL) run in fresh interpreters started together the first time
a test needs one; this process imports only `rlft` and `rlft._moved`. Four of them load torch and TRL: about 30 s
of CPU in all, 15-35 s on 2 shared cores.
"""

from __future__ import annotations

import collections
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlft._moved import MOVED, new_name
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)  # fenced blocks and inline code: where docs name import paths
DOTTED = re.compile(r"(?<![\w./-])rlft(?:\.[A-Za-z_]\w*)+")  # not a file name's tail (runs/rlft.x)
FROM_IMPORT = re.compile(r"^\s*from\s+(rlft(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n]+)", re.M)
FILE_PATH = re.compile(r"(?<![\w./-])(rlft/[\w/.]*\w|rewards/\w+\.py)")  # a bare rewards/<x> is often a metric name
# Dotted words in code spans that are not import paths (a file name like `rlft.yaml`, a CLI word). None today; add
# one only with its reason.
NOT_IMPORT_PATHS: dict[str, str] = {}
# `rlft.evaluate(...)` and `rlft.export(...)` are the public functions (rlft/__init__.py), whose names are also old
# module paths; rlft/__init__.py keeps the old modules from replacing them (test_old_module_paths_leave_the_functions).
PUBLIC_FUNCTIONS = {"rlft.evaluate", "rlft.export"}
# Old paths named as old paths, on purpose: docs/architecture.md#old-import-paths.
OLD_PATH_EXAMPLES = {"rlft.config", "rlft.reward_loader"}


# --- what the docs and the folders name (no import) -------------------------------------------------------------

def documented_paths() -> dict[str, list[str]]:
    """Dotted path -> the doc files naming it, from inline code, code blocks and `from rlft... import a, b`."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for doc in DOCS:
        for span in CODE.findall(doc.read_text()):
            names = set(DOTTED.findall(span))
            for module, imported in FROM_IMPORT.findall(span.strip("`")):
                for item in imported.strip("()").split(","):
                    item = item.split("#")[0].split(" as ")[0].strip()
                    if item.isidentifier():
                        names.add(f"{module}.{item}")
            for name in names - set(NOT_IMPORT_PATHS):
                found[name].add(doc.name)
    return {name: sorted(docs) for name, docs in sorted(found.items())}


def module_names() -> list[str]:
    """Every module and package of rlft, rlft.rewards included, sorted, read from the files."""
    names = []
    for top, package in ((ROOT / "rlft", "rlft"), (ROOT / "rewards", "rlft.rewards")):
        for file in top.rglob("*.py"):
            parts = file.relative_to(top).with_suffix("").parts
            if "__pycache__" in parts or parts[-1] == "__main__":  # `python -m rlft`: importing it runs the CLI
                continue
            names.append(".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return sorted(names)


def file_of(module: str) -> Path:
    """rlft.a.b -> its folder (a package) or its .py file."""
    top, parts = ((ROOT / "rewards", module.split(".")[2:]) if module.startswith("rlft.rewards") else
                  (ROOT / "rlft", module.split(".")[1:]))
    path = top.joinpath(*parts)
    return path if path.is_dir() else path.with_suffix(".py")


def packages() -> list[str]:
    return [m for m in module_names() if file_of(m).is_dir()]


def old_paths() -> list[str]:
    """Every old path of rlft/_moved.py, and every submodule of a moved package under its old name
    (`rlft.synthetic.generate`), sorted: a parent before its children."""
    paths = set(MOVED)
    for old, new in MOVED.items():
        if file_of(new).is_dir():
            paths |= {f"{old}.{f.stem}" for f in file_of(new).glob("*.py") if f.stem != "__init__"}
    return sorted(paths)


# --- the fresh interpreters ---------------------------------------------------------------------------------------

# Every module in sorted order, then (new paths loaded first) every old path, then every documented path.
NEW_FIRST = r"""
import importlib, json, sys, traceback, warnings
names, documented = json.loads(sys.argv[1]), json.loads(sys.argv[2])
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(f"import {name}: {traceback.format_exc(limit=-3)}")
from rlft._moved import MOVED
from tests.test_import_paths import resolve
same = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    for old, new in MOVED.items():
        try:
            same[old] = importlib.import_module(old) is importlib.import_module(new)
        except BaseException as e:
            same[old] = f"{type(e).__name__}: {e}"
unresolved = {}
for path in documented:
    try:
        resolve(path)
    except BaseException as e:
        unresolved[path] = f"{type(e).__name__}: {e}"
print(json.dumps({"failed": failed, "same": same, "unresolved": unresolved}))
"""

# Old paths first, in an interpreter that imported nothing else of rlft: each import goes through the alias finder
# (its warning is seen, and a second copy of a module would be made here if the path finder loaded one).
OLD_FIRST = r"""
import importlib, json, sys, warnings
import rlft
from rlft._moved import new_name

found = {}
for old in sys.argv[1:]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    new = new_name(old)
    found[old] = {"new": new, "same": module is importlib.import_module(new), "name": module.__name__,
                  "spec": module.__spec__.name,
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]}
by_file = {}
for key, module in list(sys.modules.items()):
    if key == "rlft" or key.startswith("rlft."):
        by_file.setdefault(getattr(module, "__file__", None) or key, {})[id(module)] = key
print(json.dumps({
    "found": found,
    "copies": [sorted(keys.values()) for keys in by_file.values() if len(keys) > 1],
    "functions": {name: type(getattr(rlft, name)).__name__ for name in ("evaluate", "export")},
}))
"""


def resolve(path: str) -> object:
    """Import the longest importable module prefix of `path` that is not an old (moved) path, then getattr the
    rest; raises ImportError / AttributeError naming what is missing."""
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if new_name(name) is not None:
            continue  # an alias of a moved module: a documented path must resolve through the new one
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise  # a real module failed to import (a missing dependency): a failure too
        break
    for attr in parts[i:]:
        obj = getattr(obj, attr)
    return obj


@functools.cache
def started() -> dict[str, subprocess.Popen]:
    """The fresh interpreters (cwd the repository), all started the first time a test asks for one."""
    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    runs = {"new first": start("-c", NEW_FIRST, json.dumps(module_names()), json.dumps(list(documented_paths()))),
            "old first": start("-c", OLD_FIRST, *old_paths())}
    return runs | {package: start("-c", f"import {package}") for package in packages()}


@functools.cache
def finished(key: str) -> tuple[int, str, str]:
    run = started()[key]
    out, err = run.communicate(timeout=300)
    return run.returncode, out, err


def result(key: str) -> dict:
    code, out, err = finished(key)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])  # the last line: an import may print too


# --- documented paths ---------------------------------------------------------------------------------------------

def test_every_documented_import_path_resolves():
    paths = documented_paths()
    assert len(paths) > 50, f"the extractor found only {list(paths)}: is its regex still right?"
    unresolved = result("new first")["unresolved"]
    failures = [f"{path} ({', '.join(paths[path])}): {why}" for path, why in unresolved.items()]
    assert not failures, "documented import paths that do not resolve:\n" + "\n".join(failures)


def test_docs_name_the_new_paths_not_the_old():
    old = [f"{path} ({', '.join(docs)}) -> {new_name(path)}" for path, docs in documented_paths().items()
           if new_name(path) is not None and path not in PUBLIC_FUNCTIONS | OLD_PATH_EXAMPLES]
    assert not old, "docs name old import paths (rlft/_moved.py); name the new ones:\n" + "\n".join(old)


def test_every_documented_rlft_file_exists():
    missing = sorted({f"{m} ({doc.name})" for doc in DOCS for m in FILE_PATH.findall(doc.read_text())
                      if not (ROOT / m).exists()})
    assert not missing, "docs name files that do not exist:\n" + "\n".join(missing)


# --- old paths (rlft/_moved.py) -----------------------------------------------------------------------------------

@pytest.mark.parametrize("old", old_paths())
def test_old_path_warns_and_is_the_moved_module(old):
    got = result("old first")["found"][old]
    new = got["new"]
    assert got["same"], f"import {old} is not the module object of {new}"
    assert got["name"] == got["spec"] == new, f"{old}: __name__ {got['name']}, __spec__.name {got['spec']}"
    assert any(old in w and new in w for w in got["warnings"]), \
        f"{old}: no DeprecationWarning naming {new}: {got['warnings']}"


def test_no_module_is_loaded_twice_under_old_and_new_paths():
    copies = result("old first")["copies"]
    assert copies == [], f"module objects loaded twice from one file, under these names: {copies}"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_new_path_first_then_old_is_the_same_module(old):
    same = result("new first")["same"][old]
    assert same is True, f"with {MOVED[old]} imported first, import {old} is another module object ({same})"


def test_old_module_paths_leave_the_functions():
    """`import rlft.evaluate` (an old module path) must not make `rlft.evaluate` a module: it is the function."""
    assert result("old first")["functions"] == {"evaluate": "function", "export": "function"}


# --- layout -------------------------------------------------------------------------------------------------------

def test_rlft_top_level_has_at_most_16_entries():
    entries = sorted(p.name for p in (ROOT / "rlft").iterdir() if p.name != "__pycache__")
    assert len(entries) <= 16, f"{len(entries)} entries at rlft/'s top level (at most 16): {entries}"


def test_no_two_modules_share_a_file_name():
    files = collections.defaultdict(list)
    for top in (ROOT / "rlft", ROOT / "rewards"):
        for file in top.rglob("*.py"):
            if "__pycache__" not in file.parts and file.name not in ("__init__.py", "__main__.py"):
                files[file.name].append(str(file.relative_to(ROOT)))
    shared = {name: where for name, where in files.items() if len(where) > 1}
    assert not shared, f"module file names used twice: {shared}"


# --- no import cycle ----------------------------------------------------------------------------------------------

def test_every_module_imports_in_sorted_order_in_one_fresh_interpreter():
    failed = result("new first")["failed"]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("package", packages())
def test_each_package_imports_on_a_fresh_interpreter(package):
    code, _, err = finished(package)
    assert code == 0, f"python -c 'import {package}' failed:\n{err}"


def _old_imports(text: str) -> list[str]:
    """The old module paths an import statement in `text` names: `import rlft.config`, `from rlft.config import x`,
    `from rlft import config` (the four packages that were modules are not old paths)."""
    found = [m.group(1) for m in re.finditer(r"^\s*(?:from|import)\s+(rlft(?:\.\w+)+)", text, re.MULTILINE)]
    for names in re.findall(r"^\s*from rlft import ([\w, ]+)", text, re.MULTILINE):
        found += [f"rlft.{n.split(' as ')[0].strip()}" for n in names.split(",")]
    return [name for name in found if new_name(name) is not None]


def test_rlft_its_tests_and_benchmarks_import_no_old_path():
    assert _old_imports("from rlft import constraint as C\nimport rlft.config\nfrom rlft.data import prepare\n") \
        == ["rlft.config", "rlft.constraint"]
    files = [p for folder in ("rlft", "rewards", "tests", "benchmarks", "recipes") for p in (ROOT / folder).rglob("*.py")
             if p.name != "_moved.py" and p != Path(__file__)]
    found = {str(p.relative_to(ROOT)): old for p in files if (old := _old_imports(p.read_text(encoding="utf-8")))}
    assert not found, f"old import paths (use the new ones, rlft/_moved.py): {found}"
