"""The layers import only downwards, and file systems never see the runtime.

DESIGN.md's one rule: a file system sees only the file-system API and the kernel
services it is handed. These checks read the import statements of every module.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The allow-list: every package of ours -> the packages of ours it may import. A new
# package fails the test until it is placed here.
SERVICES = {"bento_user.blockdev", "bento_user.ks_emul"}
ALLOWED = {
    "bento_user": {"bento_user.cli"},
    "bento_user.blockdev": set(),
    "bento_user.ks_emul": {"bento_user.blockdev"},
    "bento_user.api": SERVICES,
    "bento_user.runtime": SERVICES | {"bento_user.api"},
    # the CLI reaches file systems through the API only; provenance's query stays its own
    "bento_user.cli": SERVICES | {"bento_user", "bento_user.api", "bento_user.runtime",
                                  "filesystems.provenance", "fuzz"},
    "filesystems": set(),
    "filesystems.xv6": SERVICES | {"bento_user.api"},
    "filesystems.provenance": SERVICES | {"bento_user.api", "filesystems.xv6"},
    "filesystems.tiny": SERVICES | {"bento_user.api"},
    "fuzz": SERVICES | {"bento_user.api", "bento_user.runtime"},
}
OURS = ("bento_user", "filesystems", "fuzz", "tests", "bench")
FORBIDDEN_FOR_FILESYSTEMS = {"pyfuse3", "trio", "bento_user.cli", "bento_user.runtime"}


def imports_of(path: Path, package: str) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


def modules_under(folder: str) -> list[tuple[Path, str]]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        package = ".".join(parts if parts[-1] == "__init__" and parts.pop() else parts[:-1])
        out.append((path, package))
    return out


def layer_of(module: str) -> str:
    """The package a module belongs to for layering: ``bento_user.X``,
    ``filesystems.X``, or a top-level package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("bento_user", "filesystems") and len(parts) > 1 \
        else parts[0]


@pytest.mark.parametrize("folder", ["bento_user", "filesystems", "fuzz"])
def test_every_import_of_ours_is_on_the_allow_list(folder: str) -> None:
    for path, package in modules_under(folder):
        layer = layer_of(package)
        assert layer in ALLOWED, f"{layer} ({path.relative_to(ROOT)}) is not on the allow-list"
        for name in imports_of(path, package):
            if name.split(".")[0] not in OURS:
                continue
            target = layer_of(name)
            assert target == layer or target in ALLOWED[layer], (
                f"{path.relative_to(ROOT)} imports {name}: {layer} may not import {target}")


def test_file_systems_never_import_the_runtime() -> None:
    for path, package in modules_under("filesystems"):
        for name in imports_of(path, package):
            top = {name.split(".")[0], ".".join(name.split(".")[:2])}
            assert not top & FORBIDDEN_FOR_FILESYSTEMS, (
                f"{path.relative_to(ROOT)} imports {name}: file systems see only the "
                "file-system API and kernel services")


@pytest.mark.parametrize("package", ["bento_user.blockdev", "bento_user.ks_emul", "bento_user.api"])
def test_public_names_are_exported_once_from_private_modules(package: str) -> None:
    pkg = importlib.import_module(package)
    public = [n for n, v in vars(pkg).items() if not n.startswith("_") and isinstance(v, type)]
    assert public, f"{package} exports nothing"
    for name in public:
        obj = getattr(pkg, name)
        origin = getattr(obj, "__module__", package)
        assert origin.startswith(package + "._"), f"{package}.{name} comes from {origin}"
    submodules = [m.name for m in pkgutil.iter_modules(pkg.__path__)]
    assert all(m.startswith("_") for m in submodules), submodules


def test_the_oracles_import_no_file_system() -> None:
    """The model and the crash oracle judge file systems: they must not share code
    with what they judge (a bug copied into both would pass)."""
    for name in ("model.py", "crash_oracle.py"):
        path = ROOT / "fuzz" / name
        for imported in imports_of(path, "fuzz"):
            assert not imported.startswith("filesystems"), f"fuzz/{name} imports {imported}"
            assert imported.split(".")[0] != "fuzz" or imported in ("fuzz.target", "fuzz.crash"), (
                f"fuzz/{name} imports {imported}")


def test_a_subclass_of_xv6_uses_only_its_public_names() -> None:
    """Provenance is written against xv6's extension seam (filesystems/xv6/__init__.py),
    not its private modules."""
    for path, package in modules_under("filesystems/provenance"):
        for name in imports_of(path, package):
            assert not name.startswith("filesystems.xv6._"), (
                f"{path.relative_to(ROOT)} imports {name}, private to xv6")
