"""The Store boundary: only db/ writes SQL or touches the Store's connection and lock (docs/architecture.md).

The packages above db/ reach the database through the functions of db/ modules and the Store's public methods
(transaction, query, row, scalar, ...). This scans their source, so a statement or a `store._lock` that creeps
back into serving/ fails here with its file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABOVE_DB = ("serving", "alignment", "annotate", "bench")

# SQL that is not PrefLab's: each measures plain DuckDB on a connection of its own, which is the point.
ALLOWED_FILES = {"bench/idle_gap.py"}  # DuckDB's own cost after an idle gap, apart from PrefLab
# the baselines: what one writes without PrefLab
ALLOWED_NAMES = {"bench/export.py": {"BASELINE_SQL"}, "bench/pairs.py": {"BASELINE_SQL"}}

SQL = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\bCREATE\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+)?(TABLE|VIEW|INDEX|SEQUENCE)\b|\bDROP\s+(TABLE|VIEW)\b",
    re.IGNORECASE | re.DOTALL,
)
STORE_INTERNALS = {"con", "_lock", "_first", "_derive_pairs_for"}


def _sources() -> list[Path]:
    return sorted(p for package in ABOVE_DB for p in (ROOT / package).rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes: prose that may say "select ... from" without being SQL."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _allowed_strings(tree: ast.AST, names: set[str]) -> set[int]:
    """ids of the string nodes assigned to an allowed module-level name."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in node.targets):
            found.update(id(n) for n in ast.walk(node.value))
    return found


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def find_violations(path: Path, source: str) -> list[str]:
    """`path:line: what` for each SQL string literal and each use of a Store internal in one file's source.

    A Store internal is `.con`, `._first` or `._derive_pairs_for` on anything, and `._lock` on anything but
    `self` (classes above db/ keep locks of their own)."""
    rel = path.relative_to(ROOT).as_posix() if path.is_absolute() else path.as_posix()
    tree = ast.parse(source, filename=rel)
    skip = _docstrings(tree) | _allowed_strings(tree, ALLOWED_NAMES.get(rel, set()))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if rel not in ALLOWED_FILES and (m := SQL.search(node.value)):
                found.append((node.lineno, f"SQL {m.group(0)[:60]!r}"))
        elif isinstance(node, ast.Attribute) and node.attr in STORE_INTERNALS:
            if node.attr == "_lock" and _is_self(node.value):
                continue
            found.append((node.lineno, f"Store internal .{node.attr} on {ast.unparse(node.value)}"))
    return [f"{rel}:{line}: {what}" for line, what in sorted(found)]


def test_finder_sees_sql_and_store_internals():
    # the checker itself: each kind of breach is found, and what is allowed is not
    bad = '''
def f(store):
    """Select the rows from the table (prose, not SQL)."""
    store.query("SELECT id FROM models WHERE name = ?", ["x"])
    store.scalar(f"DELETE FROM pairs WHERE id = {1}")
    with store._lock:
        store.con.execute("update datasets set k = 2")
    self._lock = None
    return store._first("...")
'''
    assert find_violations(Path("serving/example.py"), bad) == [
        "serving/example.py:4: SQL 'SELECT id FROM'",
        "serving/example.py:5: SQL 'DELETE FROM'",
        "serving/example.py:6: Store internal ._lock on store",
        "serving/example.py:7: SQL 'update datasets set'",
        "serving/example.py:7: Store internal .con on store",
        "serving/example.py:9: Store internal ._first on store",
    ]
    assert find_violations(Path("bench/idle_gap.py"), 'con.execute("SELECT 1 FROM t")') == []
    assert find_violations(Path("bench/export.py"), 'BASELINE_SQL = "SELECT a FROM pairs"') == []
    assert find_violations(Path("bench/export.py"), 'OTHER = "SELECT a FROM pairs"') != []


def test_only_db_writes_sql_or_touches_the_store_internals():
    found = [v for path in _sources() for v in find_violations(path, path.read_text(encoding="utf-8"))]
    assert not found, "SQL or Store internals outside db/ (move them into a db/ function):\n" + "\n".join(found)
