"""Text sources for the synthetic multilingual corpus.

Each ``*_sentences(lang)`` function reads one local source and returns *raw* candidate sentences
(split into sentences, markup removed, but not yet normalised or filtered) for one language of
:data:`~drax.data.synthetic.normalise.LANGS`, in a deterministic order. :func:`sentence_pool`
merges them, normalises, filters and deduplicates them (:mod:`drax.data.synthetic.normalise`) and
shuffles deterministically.

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
to be spoken (see :func:`drax.data.synthetic.speech.to_spoken`); that is checked there, not here.

:func:`wordfreq_sequences` (pip ``wordfreq``) makes random frequency-weighted word sequences; they
are *not* part of :func:`sentence_pool` (they are not sentences), callers may add them to training
text explicitly.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from drax.data.synthetic.normalise import (
    _ANSI,
    CJK_LANGS,
    LANGS,
    dedup_key,
    is_clean,
    is_plain_word,
    language_ok,
    normalize,
    split_sentences,
)
from drax.data.synthetic.roff import TAINT, strip_roff

logger = logging.getLogger(__name__)

FORTUNE_DIR = os.environ.get("DRAX_FORTUNE_DIR", "/usr/share/games/fortunes")
MAN_DIR = os.environ.get("DRAX_MAN_DIR", "/usr/share/man")
WORDNET_DIR = os.environ.get("DRAX_WORDNET_DIR", "/usr/share/wordnet")


class MissingSourceError(RuntimeError):
    """A text source is not installed; the message names the package to install."""


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"unsupported language {lang!r}; expected one of {', '.join(LANGS)}")


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

    base = Path(chatterbot_corpus.__file__).parent / "data" / _CHATTERBOT_DIRS[lang]
    out: list[str] = []
    for path in sorted(base.glob("*.yml")):
        with path.open(encoding="utf-8") as f:
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


def _fortune_files(lang: str) -> list[Path]:
    d = Path(FORTUNE_DIR)
    if lang == "en":
        return [d / n for n in _EN_FORTUNES]
    if lang == "de":
        return sorted(p for p in (d / "de").glob("*")
                      if not p.name.endswith((".dat", ".u8")) and "asciiart" not in p.name)
    if lang == "es":  # es/off/ (offensive) is not globbed
        return sorted((d / "es").glob("*.fortunes"))
    if lang == "it":
        return sorted(p for p in (d / "it").glob("*")
                      if not p.name.endswith((".dat", ".u8")) and not p.name.endswith("banner"))
    if lang == "pt":
        return [d / "brasil"]
    if lang == "zh":
        return [d / n for n in ("chinese", "tang300", "song100")]
    return []


_ATTRIBUTION = re.compile(r"^\s*(--|—|~~)|^\s{4,}-")


@functools.lru_cache(maxsize=None)
def fortune_sentences(lang: str) -> tuple[str, ...]:
    """Debian fortune cookies (offensive sections skipped); no French or Japanese package."""
    _check_lang(lang)
    if lang not in _FORTUNE_PKG:
        return ()
    files = [p for p in _fortune_files(lang) if p.is_file()]
    if not files:
        raise MissingSourceError(f"source 'fortunes' for {lang} needs Debian package "
                                 f"{_FORTUNE_PKG[lang]} (apt-get install {_FORTUNE_PKG[lang]})")
    out: list[str] = []
    for path in files:
        raw = path.read_text(encoding="utf-8", errors="replace")
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


def _po_strings(path: Path, want_msgid: bool) -> list[str]:
    """The translations (or, with ``want_msgid``, the English msgids) of a .po file.

    A small parser without dependencies: entries are blocks separated by blank lines; fuzzy
    entries, the header and empty translations are skipped; for plural entries the first form.
    """
    blocks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace"))
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
    loc = "fr" if lang == "en" else _DJANGO_LOCALE[lang]  # en: the msgids, which are English
    out: list[str] = []
    for path in sorted(Path(django.__file__).parent.glob(f"**/locale/{loc}/LC_MESSAGES/*.po")):
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
    files = [Path(WORDNET_DIR) / f"data.{p}" for p in ("noun", "verb", "adj", "adv")]
    files = [p for p in files if p.is_file()]
    if not files:
        raise MissingSourceError("source 'wordnet' needs Debian package wordnet-base "
                                 "(apt-get install --no-install-recommends wordnet-base)")
    out: list[str] = []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as f:
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


@functools.lru_cache(maxsize=None)
def manpage_sentences(lang: str) -> tuple[str, ...]:
    """Sentences from Debian's translated man pages (roff stripped, identifier-bearing dropped)."""
    _check_lang(lang)
    if lang not in _MAN_LOCALE:
        return ()
    files = sorted((Path(MAN_DIR) / _MAN_LOCALE[lang]).glob("man*/*"))
    if not files:
        raise MissingSourceError(f"source 'manpages' for {lang} needs Debian package "
                                 f"{_MAN_PKG[lang]} (apt-get install {_MAN_PKG[lang]})")
    out: list[str] = []
    seen_real: set[Path] = set()
    for path in files:
        real = path.resolve()
        if real in seen_real or not real.is_file():
            continue
        seen_real.add(real)
        try:
            opener = gzip.open if real.name.endswith(".gz") else open
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
                if TAINT not in s:
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
        if not w or f <= 0 or not is_plain_word(w, lang):
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
