"""Load DuckDB extensions from their pip wheels, never from the network.

The extension site is unreachable here, so each extension comes from the PyPI package
``duckdb-extension-<name>`` (module ``duckdb_extension_<name>``) pinned to the DuckDB release.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb


class ExtensionNotInstalled(RuntimeError):
    """The pip package that carries a DuckDB extension is missing or holds no usable file."""


def extension_path(name: str) -> Path:
    """The ``.duckdb_extension`` file shipped by the pip package ``duckdb-extension-<name>``."""
    module = f"duckdb_extension_{name}"
    package = f"duckdb-extension-{name}=={duckdb.__version__}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        raise ExtensionNotInstalled(
            f"DuckDB extension {name!r} is not installed: it loads from the pip package "
            f"{package} (module {module}); add it to the environment") from None
    root = Path(mod.__file__).parent / "extensions"
    found = sorted(root.glob(f"*/{name}.duckdb_extension")) or sorted(
        root.glob("*/*.duckdb_extension"))
    if not found:
        raise ExtensionNotInstalled(
            f"the pip package {package} holds no .duckdb_extension file under {root}")
    # Prefer the build for this DuckDB release (directory v<version>).
    for path in found:
        if path.parent.name == f"v{duckdb.__version__}":
            return path
    return found[0]


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> Path:
    """LOAD extension `name` into `con` from its pip package; return the file loaded."""
    path = extension_path(name)
    quoted = path.as_posix().replace("'", "''")
    con.execute(f"LOAD '{quoted}'")
    return path
