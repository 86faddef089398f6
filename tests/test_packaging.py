"""A non-editable `pip install .` must ship every subpackage and data file (rewards/ is mapped to rlft.rewards)."""

import tomllib

from tests.conftest import ROOT


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rlft").rglob("__init__.py")}
    found.add("rlft.rewards")
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"]["rlft.rewards"] == "rewards"


def test_package_data_covers_non_python_files():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    roots = {"rlft": ROOT / "rlft", "rlft.rewards": ROOT / "rewards"}
    for package, root in roots.items():
        data = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                and "__pycache__" not in p.parts and not any(
                    (ROOT / "rlft" / sub) in p.parents for sub in ("judge", "labeling", "ppo", "synthetic",
                                                                   "trainers") if package == "rlft")]
        patterns = config.get(package, [])
        for path in data:
            rel = path.relative_to(root)
            assert any(rel.match(pat) for pat in patterns), f"{package}: {rel} is not in package-data"
