"""Text sources for the synthetic multilingual corpus.

Each ``*_sentences(lang)`` function reads one local source and returns *raw* candidate sentences
(split into sentences, markup removed, but not yet normalised or filtered) for one language of
:data:`LANGS`, in a deterministic order. :func:`sentence_pool` merges them, normalises
(:func:`normalize`), filters (:func:`is_clean`), deduplicates on :func:`dedup_key` and shuffles
deterministically.

Sources (install what a language needs; all are local, nothing is downloaded at run time):

=============  ==========================================  ====================================
name           provides                                    install
=============  ==========================================  ====================================
chatterbot     dialogue lines, all 8 languages             pip ``chatterbot-corpus``
fortunes       fortune cookies: en de es it pt zh          apt ``fortunes fortunes-de
                                                           fortunes-es fortunes-it fortunes-br
                                                           fortunes-zh``
django         UI strings of Django's .po files, all 8     pip ``django``
wordnet        ~48k English example phrases                apt ``wordnet-base``
manpages       translated man pages: de es fr it pt ja zh  apt ``manpages-de manpages-es
                                                           manpages-fr manpages-it
                                                           manpages-pt-br manpages-ja
                                                           manpages-zh``
pydoc          Python's pydoc topics (English prose)       (standard library)
=============  ==========================================  ====================================

Missing packages: a source function raises :class:`MissingSourceError` naming the package to
install. :func:`sentence_pool` *skips* such a source, logs a warning with the package name, and
records it in :data:`last_pool_stats`; it raises :class:`MissingSourceError` (naming every
missing package) only when the sources that are present give fewer than ``min_sentences``
distinct sentences. Japanese and Chinese additionally need ``pyopenjtalk-plus`` / ``pypinyin``
to be spoken (see :func:`drax.data.synthetic.to_spoken`); that is checked there, not here.

:func:`wordfreq_sequences` (pip ``wordfreq``) makes random frequency-weighted word sequences; they
are *not* part of :func:`sentence_pool` (they are not sentences), callers may add them to training
text explicitly.
"""

from __future__ import annotations

import functools
import glob
import gzip
import logging
import os
import random
import re
import unicodedata
from collections.abc import Callable, Iterable

import yaml

logger = logging.getLogger(__name__)

LANGS: tuple[str, ...] = ("en", "de", "es", "fr", "it", "pt", "zh", "ja")
CJK_LANGS = frozenset({"zh", "ja"})

FORTUNE_DIR = os.environ.get("DRAX_FORTUNE_DIR", "/usr/share/games/fortunes")
MAN_DIR = os.environ.get("DRAX_MAN_DIR", "/usr/share/man")
WORDNET_DIR = os.environ.get("DRAX_WORDNET_DIR", "/usr/share/wordnet")


class MissingSourceError(RuntimeError):
    """A text source is not installed; the message names the package to install."""


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; expected one of {', '.join(LANGS)}")


# ----------------------------------------------------------------------------------------------
# Normalisation and filtering
# ----------------------------------------------------------------------------------------------

_LATIN_EXTRA = {
    "en": "",
    "de": "äöüÄÖÜß",
    "es": "áéíóúüñÁÉÍÓÚÜÑ",
    "fr": "àâæçéèêëîïôœùûüÿÀÂÆÇÉÈÊËÎÏÔŒÙÛÜŸ",
    "it": "àèéìíîòóùúÀÈÉÌÍÎÒÓÙÚ",
    "pt": "áâãàçéêíóôõúüÁÂÃÀÇÉÊÍÓÔÕÚÜ",
}
_LATIN_PUNCT = ",.!?;:'\"-"
_SPANISH_PUNCT = "¿¡"
_ZH_PUNCT = "，。！？、；：“”"
_JA_PUNCT = "、。！？「」『』・ー"  # ー and ・ are part of katakana words
_JA_PARTICLES = "とをはがにでのもやへ"

# Allowed characters per language (after normalisation); anything else rejects the sentence.
_ALLOWED: dict[str, re.Pattern] = {}
for _lang, _extra in _LATIN_EXTRA.items():
    _chars = "a-zA-Z" + re.escape(_extra) + re.escape(_LATIN_PUNCT) + " "
    if _lang == "es":
        _chars += re.escape(_SPANISH_PUNCT)
    _ALLOWED[_lang] = re.compile(f"^[{_chars}]+$")
_ALLOWED["zh"] = re.compile("^[\u4e00-\u9fff" + re.escape(_ZH_PUNCT) + "]+$")
_ALLOWED["ja"] = re.compile(
    "^[\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff\u3005" + re.escape(_JA_PUNCT) + "]+$"
)

_LETTER_CLASS = {
    lang: re.compile("[a-zA-Z" + re.escape(extra) + "]") for lang, extra in _LATIN_EXTRA.items()
}
_WORD_SHAPE = {
    lang: re.compile("^[{0}]+(?:['-][{0}]+)*'?$".format("a-zA-Z" + re.escape(extra)))
    for lang, extra in _LATIN_EXTRA.items()
}
_WORD_PARTS = re.compile("['-]")
_NON_WORD = re.compile(r"[^\w\s]|_")
_ABBREVIATIONS = frozenset("Mr Mrs Ms Dr St Jr Sr Prof Nr Hr Fr Sra Srta Sig Dott Ing Av Mme Mlle "
                           "etc vs Bd Abs ca bzw usw".split())
_HAN = re.compile("[\u4e00-\u9fff]")
_KANA = re.compile("[\u3041-\u3096\u30a1-\u30fa]")

# Typographic characters mapped to the plain forms the filters allow.
_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2039": '"', "\u203a": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2026": "...", "\u00a0": " ", "\u3000": " ",
})
# For zh/ja, NFKC turns full-width punctuation into ASCII; turn it back (native transcripts).
_CJK_FULLWIDTH = {",": "，", "!": "！", "?": "？", ";": "；", ":": "："}
_ZH_PERIOD = re.compile(r"(?<=[\u4e00-\u9fff])\.")
_WS = re.compile(r"\s+")
_URLISH = re.compile(r"(https?:|www\.|\.com\b|\.org\b|@|://)", re.I)


# Italian ASCII convention "perche'", "e'", "citta'" for "perché", "è", "città" (fortunes-it).
_IT_APOSTROPHE_ACCENT = re.compile(r"\b([A-Za-z]*)([aeiouAEIOU])'(?=[\s,.!?;:\"]|$)")
_IT_GRAVE = dict(zip("aeiouAEIOU", "àèìòùÀÈÌÒÙ"))


def _it_accent(m: re.Match) -> str:
    stem, vowel = m.group(1), m.group(2)
    word = (stem + vowel).lower()
    if word in ("po", "mo", "de", "pie", "to", "va", "di", "fa", "sta", "da"):
        return m.group(0)  # real elisions: po' (poco), mo' (modo), va' (vai), di' (dici)...
    if word.endswith("che") or word in ("ne", "se", "affinche", "tre") or word.endswith("tre"):
        return stem + ("é" if vowel == "e" else "É")
    return stem + _IT_GRAVE[vowel]


def normalize(text: str, lang: str) -> str:
    """NFKC, typographic quotes/dashes to ASCII, collapsed whitespace, stripped.

    For zh/ja, ASCII punctuation is mapped back to full-width forms (``,`` → ``，``), CJK-adjacent
    periods become ``。`` and spaces are removed. For the other languages leading dialogue dashes
    are removed and the first letter is capitalised; Italian word-final vowel + apostrophe
    (``perche'``, ``e'``) becomes the accented vowel (``perché``, ``è``).
    """
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    text = _WS.sub(" ", text).strip()
    if lang in CJK_LANGS:
        # Chinese quotes became '"' through _TRANSLATE; restore paired “” for zh, 「」 for ja.
        if '"' in text:
            parts = text.split('"')
            if len(parts) % 2 == 1:
                left, right = ("“", "”") if lang == "zh" else ("「", "」")
                text = "".join(p + (left if i % 2 == 0 else right) for i, p in enumerate(parts[:-1]))
                text += parts[-1]
        text = "".join(_CJK_FULLWIDTH.get(c, c) for c in text)
        text = _ZH_PERIOD.sub("。", text).replace("...", "…")
        text = text.replace(" ", "")
    else:
        text = re.sub(r"^(-+|\"-)\s*", "", text)
        text = re.sub(r"\s+([,.!?;:])", r"\1", text)
        text = re.sub(r"\.{3,}", "...", text).strip()
        if lang == "it":
            text = _IT_APOSTROPHE_ACCENT.sub(_it_accent, text)
        if text[:1].islower():
            text = text[0].upper() + text[1:]
    return text.strip()


def _balanced_quotes(text: str) -> bool:
    """ASCII quotes come in pairs; CJK opening/closing quotes nest properly."""
    if text.count('"') % 2:
        return False
    for op, cl in ("“”", "「」", "『』"):
        if op not in text and cl not in text:
            continue
        depth = 0
        for ch in text:
            if ch == op:
                depth += 1
            elif ch == cl:
                depth -= 1
                if depth < 0:
                    return False
        if depth:
            return False
    return True


def is_clean(text: str, lang: str, min_words: int = 3, max_words: int = 20,
             min_chars: int = 4, max_chars: int = 40) -> bool:
    """True if a *normalised* sentence is fit to be spoken and transcribed.

    Rejects: characters outside the language's script and basic punctuation (so digits, URLs,
    code, symbols, brackets and foreign scripts all fail), lengths outside ``min_words..max_words``
    words (``min_chars..max_chars`` non-punctuation characters for zh/ja), all-caps words of two or
    more letters (acronyms and identifiers, which espeak spells), unbalanced quotes, sentences
    without a letter at the start, and (ja) sentences without any kana.
    """
    if not text or not _ALLOWED[lang].match(text):
        return False
    if _URLISH.search(text):
        return False
    if lang in CJK_LANGS:
        n = len(_HAN.findall(text)) + len(_KANA.findall(text))
        if not (min_chars <= n <= max_chars):
            return False
        if lang == "ja" and not _KANA.search(text):
            return False  # kanji only: likely Chinese or a heading
        if lang == "ja" and text[0] in _JA_PARTICLES:
            return False  # fragment left after a dropped identifier
        if not _balanced_quotes(text):
            return False
        first = text[0]
        return bool(_HAN.match(first) or _KANA.match(first) or first in "「『“")
    words = text.split(" ")
    if not (min_words <= len(words) <= max_words):
        return False
    letters = _LETTER_CLASS[lang]
    stripped = text.lstrip("\"'¿¡")
    if not stripped or not letters.match(stripped[0]):
        return False
    word_re = _WORD_SHAPE[lang]
    for w in words:
        if "--" in w or w.lstrip("\"'¿¡").startswith("-"):
            return False  # command-line options, dashes used as brackets
        if len(w) == 2 and w[1] == ":" and w[0].isupper():
            return False  # dialogue labels "Q:", "A:", "D:"
        core = w.strip(_LATIN_PUNCT + _SPANISH_PUNCT)
        if not core or not word_re.match(core):
            return False  # lone punctuation, '::', dashes, ... inside a token
        if any(len(part) >= 2 and part.isupper() for part in _WORD_PARTS.split(core)):
            return False  # acronyms / identifiers
    last = words[-1].rstrip(_LATIN_PUNCT)
    if words[-1].endswith(".") and (len(last) == 1 or last in _ABBREVIATIONS):
        return False  # cut at an abbreviation ("John F.", "Dr.")
    if not _balanced_quotes(text):
        return False
    return True


# Frequent function words; used to drop sentences in the wrong language (translated man pages
# keep many untranslated English paragraphs, Spanish and Portuguese fortunes quote each other).
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the of and to in is that it was for on are with as be at by this have from "
                    "or an not but what all were when we there can your which their if will "
                    "would about out them then she he you they do does has my me our its".split()),
    "de": frozenset("der die das und ist nicht ein eine zu den von mit sich des auf für im dem "
                    "auch es an als wird bei wenn sie ich er wir ihr noch nach aus kann oder "
                    "aber nur wie was wo sind werden hat mein dass einen einem".split()),
    "es": frozenset("el la los las de que y en un una es por con para del al lo se como más "
                    "pero sus le ya o este sí porque esta entre cuando muy sin sobre también "
                    "me hay donde quien desde todo nos durante uno les ni contra otros eso "
                    "ante ellos yo está son".split()),
    "fr": frozenset("le la les de des du et un une est en que qui dans pour pas sur au avec "
                    "ce il elle ne se plus par sont mais ou son sa ses nous vous leur cette "
                    "été être fait comme tout aux je tu lui ont peut".split()),
    "it": frozenset("il lo la gli le di che e un una è per non in del della con sono si da "
                    "al alla dei delle ma come più anche questo questa ci mi ti ho ha gli "
                    "nel nella se io tu lui lei noi voi loro essere".split()),
    "pt": frozenset("o a os as de que e um uma é do da dos das em no na não para com por "
                    "se mais mas ao como seu sua ou quando muito já também só pelo pela "
                    "isso ele ela você eu nós está são ser tem foi porque".split()),
}
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def language_ok(text: str, lang: str) -> bool:
    """Cheap language check for Latin-script languages by function-word counts.

    Keeps a sentence if it has more function words of ``lang`` than function words exclusive to
    any one other language of en/de/es/fr/it/pt, or, for sentences of at most four words, none of any language.
    zh/ja are checked by script instead (always True here).
    """
    if lang not in _STOPWORDS:
        return True
    words = [w.lower() for w in _WORD_RE.findall(text)]
    mine = _STOPWORDS[lang]
    hits = sum(1 for w in words if w in mine)
    best_other = 0
    for other, sw in _STOPWORDS.items():
        if other != lang:
            best_other = max(best_other, sum(1 for w in words if w in sw and w not in mine))
    if hits == 0:
        return best_other == 0 and len(words) <= 4
    return hits > best_other


def dedup_key(text: str, lang: str) -> str:
    """Key used for deduplication and the train/dev/test split: case-folded letters only."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


# ----------------------------------------------------------------------------------------------
# Sentence splitting helpers
# ----------------------------------------------------------------------------------------------

_SENT_SPLIT_LATIN = re.compile(r"(?<=[.!?])[\"']?\s+(?=[\"'¿¡]?[A-ZÀ-ÖØ-Þ])")
_SENT_SPLIT_CJK = re.compile(r"(?<=[。！？!?])")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def split_sentences(text: str, lang: str) -> list[str]:
    """Split running text into sentences (punctuation heuristics; good enough for filtering)."""
    text = _ANSI.sub("", text)
    text = _WS.sub(" ", text).strip()
    if not text:
        return []
    if lang in CJK_LANGS:
        parts = _SENT_SPLIT_CJK.split(text)
        # zh man pages use ASCII '.' as full stop
        out: list[str] = []
        for p in parts:
            out.extend(re.split(r"(?<=[\u4e00-\u9fff])\.(?=\s*[\u4e00-\u9fff])", p))
        return [p.strip() for p in out if p.strip()]
    return [p.strip() for p in _SENT_SPLIT_LATIN.split(text) if p.strip()]


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------

_CHATTERBOT_DIRS = {
    "en": "english", "de": "german", "es": "spanish", "fr": "french", "it": "italian",
    "pt": "portuguese", "zh": "chinese", "ja": "japanese",
}


@functools.lru_cache(maxsize=None)
def chatterbot_sentences(lang: str) -> tuple[str, ...]:
    """Dialogue lines of PyPI ``chatterbot-corpus`` (``chatterbot_corpus/data/<language>/*.yml``)."""
    _check_lang(lang)
    try:
        import chatterbot_corpus  # optional source, checked where used
    except ImportError as e:
        raise MissingSourceError("source 'chatterbot' needs PyPI package chatterbot-corpus "
                                 "(pip install chatterbot-corpus)") from e

    base = os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data", _CHATTERBOT_DIRS[lang])
    out: list[str] = []
    for path in sorted(glob.glob(os.path.join(base, "*.yml"))):
        with open(path, encoding="utf-8") as f:
            try:
                doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError:
                logger.warning("chatterbot: cannot parse %s, skipped", path)
                continue
        for conv in (doc or {}).get("conversations", []) or []:
            for line in conv if isinstance(conv, list) else [conv]:
                if isinstance(line, str):
                    out.extend(split_sentences(line, lang))
    return tuple(out)


# English fortune files of Debian's `fortunes` and `fortunes-min` (the top-level directory also
# holds fortunes-it's Italian files and fortunes-zh's Chinese ones, so list them explicitly).
_EN_FORTUNES = (
    "art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education",
    "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law", "linux",
    "linuxcookie", "literature", "love", "magic", "medicine", "miscellaneous", "news",
    "paradoxum", "people", "perl", "pets", "platitudes", "politics", "pratchett", "riddles",
    "science", "songs-poems", "sports", "startrek", "tao", "wisdom", "work", "zippy",
)
_FORTUNE_PKG = {"en": "fortunes", "de": "fortunes-de", "es": "fortunes-es", "it": "fortunes-it",
                "pt": "fortunes-br", "zh": "fortunes-zh"}


def _fortune_files(lang: str) -> list[str]:
    d = FORTUNE_DIR
    if lang == "en":
        return [os.path.join(d, n) for n in _EN_FORTUNES]
    if lang == "de":
        return sorted(p for p in glob.glob(os.path.join(d, "de", "*"))
                      if not p.endswith((".dat", ".u8")) and "asciiart" not in p)
    if lang == "es":  # es/off/ (offensive) is not globbed
        return sorted(glob.glob(os.path.join(d, "es", "*.fortunes")))
    if lang == "it":
        return sorted(p for p in glob.glob(os.path.join(d, "it", "*"))
                      if not p.endswith((".dat", ".u8")) and not p.endswith("banner"))
    if lang == "pt":
        return [os.path.join(d, "brasil")]
    if lang == "zh":
        return [os.path.join(d, n) for n in ("chinese", "tang300", "song100")]
    return []


_ATTRIBUTION = re.compile(r"^\s*(--|—|~~)|^\s{4,}-")


@functools.lru_cache(maxsize=None)
def fortune_sentences(lang: str) -> tuple[str, ...]:
    """Debian fortune cookies (offensive sections skipped); no French or Japanese package."""
    _check_lang(lang)
    if lang not in _FORTUNE_PKG:
        return ()
    files = [p for p in _fortune_files(lang) if os.path.isfile(p)]
    if not files:
        raise MissingSourceError(f"source 'fortunes' for {lang} needs Debian package "
                                 f"{_FORTUNE_PKG[lang]} (apt-get install {_FORTUNE_PKG[lang]})")
    out: list[str] = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        for entry in re.split(r"^%\s*$", raw, flags=re.M):
            entry = _ANSI.sub("", entry)
            lines = []
            for line in entry.splitlines():
                if _ATTRIBUTION.match(line):
                    break  # attribution and whatever follows it
                if lang == "zh" and ("《" in line or "作者" in line):
                    continue  # poem titles and author lines
                lines.append(line.strip())
            # Blank lines separate paragraphs / dialogue turns: split there too.
            for para in "\n".join(lines).split("\n\n"):
                sep = "" if lang in CJK_LANGS else " "
                out.extend(split_sentences(sep.join(para.split("\n")), lang))
    return tuple(out)


_DJANGO_LOCALE = {"en": "en", "de": "de", "es": "es", "fr": "fr", "it": "it", "pt": "pt_BR",
                  "zh": "zh_Hans", "ja": "ja"}


def _po_unescape(s: str) -> str:
    return re.sub(r'\\(["\\nt])', lambda m: {"n": " ", "t": " "}.get(m.group(1), m.group(1)), s)


def _po_strings(path: str, want_msgid: bool) -> list[str]:
    """The translations (or, with ``want_msgid``, the English msgids) of a .po file.

    A small parser without dependencies: entries are blocks separated by blank lines; fuzzy
    entries, the header and empty translations are skipped; for plural entries the first form.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        blocks = re.split(r"\n\s*\n", f.read())
    out: list[str] = []
    for block in blocks:
        fields: dict[str, list[str]] = {}
        cur = None
        fuzzy = False
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            if line.startswith("#"):
                continue
            m = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+"(.*)"$', line)
            if m:
                cur = m.group(1)
                fields[cur] = [m.group(2)]
            elif cur and line.startswith('"') and line.endswith('"'):
                fields[cur].append(line[1:-1])
        if fuzzy or not "".join(fields.get("msgid", [])):
            continue
        if want_msgid:
            s = "".join(fields["msgid"])
        else:
            s = "".join(fields.get("msgstr", fields.get("msgstr[0]", [])))
        if s:
            out.append(_po_unescape(s))
    return out


@functools.lru_cache(maxsize=None)
def django_sentences(lang: str) -> tuple[str, ...]:
    """Translated UI strings of Django's locale .po files (English: the msgids)."""
    _check_lang(lang)
    try:
        import django  # optional source, checked where used
    except ImportError as e:
        raise MissingSourceError("source 'django' needs PyPI package django (pip install django)") from e
    root = os.path.dirname(django.__file__)
    loc = _DJANGO_LOCALE[lang]
    if lang == "en":
        pattern = os.path.join(root, "**", "locale", "fr", "LC_MESSAGES", "*.po")  # msgids are English
    else:
        pattern = os.path.join(root, "**", "locale", loc, "LC_MESSAGES", "*.po")
    out: list[str] = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        for s in _po_strings(path, want_msgid=(lang == "en")):
            if "%" in s or "{" in s or "<" in s:
                continue  # placeholders / markup
            out.extend(split_sentences(s, lang))
    return tuple(out)


_WN_QUOTE = re.compile(r'"([^"]+)"')


@functools.lru_cache(maxsize=None)
def wordnet_sentences(lang: str) -> tuple[str, ...]:
    """English example phrases in WordNet's ``data.*`` glosses (Debian ``wordnet-base``)."""
    _check_lang(lang)
    if lang != "en":
        return ()
    files = [os.path.join(WORDNET_DIR, f"data.{p}") for p in ("noun", "verb", "adj", "adv")]
    files = [p for p in files if os.path.isfile(p)]
    if not files:
        raise MissingSourceError("source 'wordnet' needs Debian package wordnet-base "
                                 "(apt-get install --no-install-recommends wordnet-base)")
    out: list[str] = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue  # licence header
                _, _, gloss = line.partition(" | ")
                for m in _WN_QUOTE.finditer(gloss):
                    s = m.group(1).strip()
                    if s:
                        out.append(s[0].upper() + s[1:])
    return tuple(out)


# --- man pages -------------------------------------------------------------------------------

_MAN_LOCALE = {"de": "de", "es": "es", "fr": "fr", "it": "it", "pt": "pt_BR", "ja": "ja",
               "zh": "zh_CN"}
_MAN_PKG = {"de": "manpages-de", "es": "manpages-es", "fr": "manpages-fr", "it": "manpages-it",
            "pt": "manpages-pt-br", "ja": "manpages-ja", "zh": "manpages-zh"}
_TAINT = "\x00"  # marks text that came from font changes / macros: sentences holding it are dropped
_ROFF_CHARS = {
    "aq": "'", "lq": '"', "rq": '"', "oq": "'", "cq": "'", "dq": '"', "em": "-", "en": "-",
    "hy": "-", "mi": "-", "bu": _TAINT, "co": _TAINT, "rg": _TAINT, "tm": _TAINT, "Fo": '"',
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
        or not m.group(4).strip() else _TAINT, line)
    line = re.sub(r"\\\((..)", lambda m: _ROFF_CHARS.get(m.group(1), _TAINT), line)
    line = re.sub(r"\\\[([^\]]*)\]", lambda m: _ROFF_CHARS.get(m.group(1), _TAINT), line)
    line = re.sub(r"\\\*(?:\[[^\]]*\]|\(..|.)", _TAINT, line)  # strings
    line = re.sub(r"\\[sSnwhvxlLHNoDkzbCXY](?:'[^']*'|\[[^\]]*\]|\(..|[-+]?\d+|.)?", _TAINT, line)
    line = line.replace("\\-", "-").replace("\\ ", " ").replace("\\~", " ").replace("\\0", " ")
    line = re.sub(r"\\[&|^%:/,!)]", "", line)
    line = line.replace("\\e", "\\").replace("\\c", "")
    line = re.sub(r"\\\"(.*)$", "", line)  # trailing comment
    if "\\" in line:
        line = line.replace("\\", _TAINT)
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
                cur.append(_TAINT)
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


@functools.lru_cache(maxsize=None)
def manpage_sentences(lang: str) -> tuple[str, ...]:
    """Sentences from Debian's translated man pages (roff stripped, identifier-bearing dropped)."""
    _check_lang(lang)
    if lang not in _MAN_LOCALE:
        return ()
    base = os.path.join(MAN_DIR, _MAN_LOCALE[lang])
    files = sorted(glob.glob(os.path.join(base, "man*", "*")))
    if not files:
        raise MissingSourceError(f"source 'manpages' for {lang} needs Debian package "
                                 f"{_MAN_PKG[lang]} (apt-get install {_MAN_PKG[lang]})")
    out: list[str] = []
    seen_real: set[str] = set()
    for path in files:
        real = os.path.realpath(path)
        if real in seen_real or not os.path.isfile(real):
            continue
        seen_real.add(real)
        try:
            opener = gzip.open if real.endswith(".gz") else open
            with opener(real, "rb") as f:
                data = f.read()
        except OSError:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # legacy encodings: skip the page
        if text.startswith(".so ") and len(text) < 200:
            continue  # link page
        sep = "" if lang in CJK_LANGS else " "
        for para in strip_roff(text):
            if sep == "":
                para = re.sub(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])", "", para)
            for s in split_sentences(para, lang):
                if _TAINT not in s:
                    out.append(s)
    return tuple(out)


@functools.lru_cache(maxsize=None)
def pydoc_sentences(lang: str) -> tuple[str, ...]:
    """English prose of Python's ``pydoc_data.topics`` (standard library; code lines dropped)."""
    _check_lang(lang)
    if lang != "en":
        return ()
    try:
        from pydoc_data.topics import topics  # optional source, checked where used
    except ImportError as e:  # some distributions split it off
        raise MissingSourceError("source 'pydoc' needs Python's pydoc_data module "
                                 "(e.g. Debian package libpython3-stdlib)") from e
    out: list[str] = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            lines = para.split("\n")
            if any(ln.startswith("   ") and not ln.strip()[:1].isalpha() for ln in lines if ln.strip()):
                continue
            if any(ln.startswith("      ") for ln in lines):
                continue  # indented code blocks
            text = " ".join(ln.strip() for ln in lines)
            if "*" in text or "``" in text or "::" in text:
                continue
            out.extend(split_sentences(text, lang))
    return tuple(out)


SOURCES: dict[str, Callable[[str], Iterable[str]]] = {
    "chatterbot": chatterbot_sentences,
    "fortunes": fortune_sentences,
    "django": django_sentences,
    "wordnet": wordnet_sentences,
    "manpages": manpage_sentences,
    "pydoc": pydoc_sentences,
}

#: Statistics of the last :func:`sentence_pool` call per language: per source the number of
#: raw / kept sentences, and the missing packages.
last_pool_stats: dict[str, dict] = {}


def sentence_pool(lang: str, max_sentences: int | None = None, seed: int = 0,
                  sources: Iterable[str] | None = None, min_sentences: int = 1) -> list[str]:
    """Distinct, clean sentences of ``lang`` from all available sources, deterministically shuffled.

    Sources are read in the fixed order of :data:`SOURCES` (or ``sources``); each sentence is
    normalised with :func:`normalize`, kept if :func:`is_clean`, and deduplicated on
    :func:`dedup_key` (first occurrence wins). The result is shuffled with a RNG seeded by
    ``(seed, lang)`` and cut to ``max_sentences``. The same inputs always give the same list.

    A source whose package is missing is skipped with a warning; if fewer than ``min_sentences``
    distinct sentences remain, :class:`MissingSourceError` names the missing packages.
    """
    _check_lang(lang)
    names = list(SOURCES) if sources is None else list(sources)
    for n in names:
        if n not in SOURCES:
            raise ValueError(f"unknown text source {n!r}; known: {', '.join(SOURCES)}")
    kept: dict[str, str] = {}
    stats: dict = {"sources": {}, "missing": []}
    for name in names:
        try:
            raw = SOURCES[name](lang)
        except MissingSourceError as e:
            logger.warning("%s: skipping text source %s: %s", lang, name, e)
            stats["missing"].append(str(e))
            continue
        n_new = 0
        for s in raw:
            s = normalize(s, lang)
            if not is_clean(s, lang) or not language_ok(s, lang):
                continue
            k = dedup_key(s, lang)
            if k and k not in kept:
                kept[k] = s
                n_new += 1
        stats["sources"][name] = {"raw": len(raw), "new": n_new}
        if raw:
            logger.info("%s: source %s: %d raw, %d new distinct sentences", lang, name, len(raw), n_new)
    pool = list(kept.values())
    stats["total"] = len(pool)
    last_pool_stats[lang] = stats
    if len(pool) < min_sentences:
        missing = "; ".join(stats["missing"]) or "none"
        raise MissingSourceError(f"{lang}: only {len(pool)} distinct sentences (< {min_sentences}); "
                                 f"missing sources: {missing}")
    random.Random(f"drax-pool-{seed}-{lang}").shuffle(pool)
    if max_sentences is not None:
        pool = pool[:max_sentences]
    return pool


# ----------------------------------------------------------------------------------------------
# Random word sequences
# ----------------------------------------------------------------------------------------------

def wordfreq_sequences(lang: str, n: int, seed: int = 0, min_words: int = 3, max_words: int = 10,
                       top_words: int = 20000) -> list[str]:
    """``n`` random frequency-weighted word sequences (PyPI ``wordfreq``), clean by :func:`is_clean`.

    Words are drawn from the ``top_words`` most frequent words of ``lang`` with probability
    proportional to frequency ** 0.5 (flattened so rarer words appear). zh/ja words are joined
    without spaces. Deterministic for ``(lang, n, seed)`` and a given wordfreq version.
    """
    _check_lang(lang)
    try:
        import wordfreq  # optional source, checked where used
    except ImportError as e:
        raise MissingSourceError("random word sequences need PyPI package wordfreq "
                                 "(pip install wordfreq)") from e
    freqs = wordfreq.get_frequency_dict(lang, wordlist="best")
    words, weights = [], []
    for w in wordfreq.iter_wordlist(lang, wordlist="best"):
        if len(words) >= top_words:
            break
        f = freqs.get(w, 0.0)
        w = unicodedata.normalize("NFKC", w)
        if not w or f <= 0 or not _ALLOWED[lang].match(w):
            continue
        if any(c in w for c in _LATIN_PUNCT + _SPANISH_PUNCT + _ZH_PUNCT + _JA_PUNCT + " "):
            continue
        if lang not in CJK_LANGS and not (_WORD_SHAPE[lang].match(w) and w.islower()):
            continue
        words.append(w)
        weights.append(f ** 0.5)
    rng = random.Random(f"drax-wordfreq-{seed}-{lang}")
    out: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n and tries < 20 * n + 100:
        tries += 1
        k = rng.randint(min_words, max_words)
        seq = rng.choices(words, weights=weights, k=k)
        s = ("".join(seq) + "。") if lang in CJK_LANGS else " ".join(seq)
        if lang not in CJK_LANGS:
            s = s[0].upper() + s[1:] + "."
        if is_clean(s, lang) and s not in seen:
            seen.add(s)
            out.append(s)
    return out
