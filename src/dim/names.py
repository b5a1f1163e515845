"""Names that come from users (model keys, factory names, attack names) as file names and as text.

A model key is free text: it names the model in the store and in every table. It
never becomes a path by itself: :func:`file_name` maps it to one safe file name
(letters, digits, ``_``, ``.``, ``-``; no separator, no ``..``), with a short hash
when anything had to be replaced, so that two keys never share a file. Where a
name is rendered, :func:`md` and :func:`tex` escape it, so that a ``|`` does not
shift a Markdown table's columns and ``<script>`` is shown, not run.
"""
from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def file_name(key: str) -> str:
    """``key`` as a file name that stays inside its folder; unchanged when it already is one."""
    text = str(key)
    safe = _UNSAFE.sub("_", text).strip("._-")[:80]
    if safe == text and safe not in ("", ".", ".."):
        return safe
    return f"{safe or 'name'}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


_MD = {"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "\\`", "*": "\\*", "[": "\\[",
       "]": "\\]", "\n": " ", "\r": " "}


def md(text: object) -> str:
    """``text`` for a Markdown table cell or line: no markup, no HTML, no column break."""
    return "".join(_MD.get(ch, ch) for ch in str(text))


_TEX = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "∞": r"$\infty$", "\n": " "}


def tex(text: object) -> str:
    """``text`` for a LaTeX table cell: every special character escaped, in one pass."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))
