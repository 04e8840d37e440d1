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

# package -> packages (of ours) it may import; anything outside bento_user is free
# except what FORBIDDEN says.
ALLOWED = {
    "bento_user.blockdev": {"bento_user.blockdev"},
    "bento_user.ks_emul": {"bento_user.ks_emul", "bento_user.blockdev"},
    "bento_user.api": {"bento_user.api", "bento_user.ks_emul", "bento_user.blockdev"},
    "bento_user.runtime": {"bento_user.runtime", "bento_user.api", "bento_user.ks_emul",
                           "bento_user.blockdev"},
}
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


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer: str) -> None:
    folder = layer.replace(".", "/")
    for path, package in modules_under(folder):
        for name in imports_of(path, package):
            if name.startswith("bento_user"):
                assert any(name == ok or name.startswith(ok + ".") for ok in ALLOWED[layer]), (
                    f"{path.relative_to(ROOT)} imports {name}, above its layer")


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
