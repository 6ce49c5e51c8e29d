"""House style of the collection's Python that no linter here checks: the same header on every
private file, and one string-formatting style (`%`, as ansible-core and community.general use)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted((ROOT / "plugins").rglob("*.py"))
PRIVATE = sorted([*(ROOT / "plugins" / "module_utils").glob("_*.py"), *(ROOT / "plugins" / "doc_fragments").glob("_*.py")])
LICENSE_HEADER = (
    "# -*- coding: utf-8 -*-\n"
    "# Copyright (c) 2026, p2pvps.fleet developers\n"
    "# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)\n"
    "# SPDX-License-Identifier: GPL-3.0-or-later\n"
)
PRIVATE_NOTICE = (
    "# Note that this {kind} is **PRIVATE** to the collection. It can have breaking changes at any time.\n"
    "# Do not use this from other collections or standalone plugins/modules!\n"
)


def rel(path):
    return str(path.relative_to(ROOT))


def test_there_is_code_to_check():
    assert len(PLUGINS) >= 10 and len(PRIVATE) >= 6


@pytest.mark.parametrize("path", PLUGINS, ids=rel)
def test_license_header(path):
    text = path.read_text(encoding="utf-8")
    if path.parent.name == "modules":
        text = text.removeprefix("#!/usr/bin/python\n")
    if text.strip():
        assert text.startswith(LICENSE_HEADER), rel(path)


@pytest.mark.parametrize("path", PRIVATE, ids=rel)
def test_private_notice_worded_once(path):
    kind = "doc fragment" if path.parent.name == "doc_fragments" else "module util"
    assert path.read_text(encoding="utf-8").startswith(LICENSE_HEADER + PRIVATE_NOTICE.format(kind=kind)), rel(path)


@pytest.mark.parametrize("path", PLUGINS, ids=rel)
def test_one_string_formatting_style(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        assert not isinstance(node, ast.JoinedStr), "%s:%d uses an f-string" % (rel(path), node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            assert not isinstance(node.func.value, ast.Constant), "%s:%d uses str.format" % (rel(path), node.lineno)
