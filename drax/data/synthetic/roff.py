"""A small roff parser: the running text of a man page's source (:func:`strip_roff`).

Used by the ``manpages`` text source (:func:`drax.data.synthetic.sources.manpage_sentences`).
Text set in another font or made by a macro is replaced by :data:`TAINT` rather than dropped, so
that the sentence around it can be dropped whole instead of being left with a hole.
"""

from __future__ import annotations

import re

TAINT = "\x00"  # marks text that came from font changes / macros: sentences holding it are dropped
_ROFF_CHARS = {
    "aq": "'", "lq": '"', "rq": '"', "oq": "'", "cq": "'", "dq": '"', "em": "-", "en": "-",
    "hy": "-", "mi": "-", "bu": TAINT, "co": TAINT, "rg": TAINT, "tm": TAINT, "Fo": '"',
    "Fc": '"', "fo": '"', "fc": '"', "a:": "ä", "o:": "ö", "u:": "ü", "A:": "Ä", "O:": "Ö",
    "U:": "Ü", "ss": "ß", "e'": "é", "a'": "á", "`e": "è", "`a": "à",
}
_FONT_MACROS = frozenset({"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "UR", "MT",
                          "OP", "SY", "Nm", "Ar", "Fl", "Cm", "Pa", "Va", "Fn", "Xr", "Ic", "Ev"})


_FONT_SPAN = re.compile(r"\\f(?:\[([^\]]*)\]|\((..)|(.))(.*?)(?=\\f|$)")
_REGULAR_FONTS = frozenset({"", "R", "P", "1"})


def _roff_inline(line: str) -> str:
    """Remove roff escapes from a text line; font-changed spans are replaced by the taint mark."""
    # font changes: anything set in bold/italic is an identifier, option or placeholder
    line = _FONT_SPAN.sub(
        lambda m: m.group(4) if (m.group(1) or m.group(2) or m.group(3) or "") in _REGULAR_FONTS
        or not m.group(4).strip() else TAINT, line)
    line = re.sub(r"\\\((..)", lambda m: _ROFF_CHARS.get(m.group(1), TAINT), line)
    line = re.sub(r"\\\[([^\]]*)\]", lambda m: _ROFF_CHARS.get(m.group(1), TAINT), line)
    line = re.sub(r"\\\*(?:\[[^\]]*\]|\(..|.)", TAINT, line)  # strings
    line = re.sub(r"\\[sSnwhvxlLHNoDkzbCXY](?:'[^']*'|\[[^\]]*\]|\(..|[-+]?\d+|.)?", TAINT, line)
    line = line.replace("\\-", "-").replace("\\ ", " ").replace("\\~", " ").replace("\\0", " ")
    line = re.sub(r"\\[&|^%:/,!)]", "", line)
    line = line.replace("\\e", "\\").replace("\\c", "")
    line = re.sub(r"\\\"(.*)$", "", line)  # trailing comment
    if "\\" in line:
        line = line.replace("\\", TAINT)
    return line


def strip_roff(source: str) -> list[str]:
    """Paragraphs of running text from a man page's roff source.

    Macro lines end paragraphs; font-macro lines (``.B``, ``.I``, ``.BR``...) and ``\\f`` font
    spans become a taint mark so the sentence around them is dropped rather than left with a
    hole; the tag line after ``.TP`` and no-fill blocks (``.nf``/``.EX``...) are dropped.
    """
    paras: list[str] = []
    cur: list[str] = []
    nofill = False
    skip_next = False

    def end():
        if cur:
            paras.append(" ".join(cur))
            cur.clear()

    for raw in source.splitlines():
        if raw.startswith((".\\\"", "'\\\"", "\\\"")):
            continue
        if raw.startswith((".", "'")):
            parts = raw[1:].strip().split(None, 1)
            name = parts[0] if parts else ""
            if name in ("nf", "EX", "Bd", "TS", "de", "ig"):
                end()
                nofill = True
            elif name in ("fi", "EE", "Ed", "TE", ".."):
                end()
                nofill = False
            elif name in _FONT_MACROS:
                cur.append(TAINT)
            else:
                end()
                if name == "TP":
                    skip_next = True
            continue
        if nofill:
            continue
        if skip_next:
            skip_next = False
            continue
        if not raw.strip():
            end()
            continue
        cur.append(_roff_inline(raw))
    end()
    return paras
