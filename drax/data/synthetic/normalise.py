"""The corpus's languages (:data:`LANGS`) and the normalisation and filtering of their sentences.

:func:`normalize` turns raw text into one canonical form per language, :func:`is_clean` and
:func:`language_ok` decide whether a normalised sentence is fit to be spoken and transcribed,
:func:`dedup_key` is the key sentences are deduplicated and split on, and :func:`split_sentences`
cuts running text into sentences. The text sources (:mod:`drax.data.synthetic.sources`) feed them.
"""

from __future__ import annotations

import re
import unicodedata

LANGS: tuple[str, ...] = ("en", "de", "es", "fr", "it", "pt", "zh", "ja")
CJK_LANGS = frozenset({"zh", "ja"})

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


def is_plain_word(word: str, lang: str) -> bool:
    """True if ``word`` is letters of ``lang``'s script only (lower case for Latin scripts), without
    punctuation or spaces: the words :func:`~drax.data.synthetic.sources.wordfreq_sequences` draws."""
    if not _ALLOWED[lang].match(word):
        return False
    if any(c in word for c in _LATIN_PUNCT + _SPANISH_PUNCT + _ZH_PUNCT + _JA_PUNCT + " "):
        return False
    return lang in CJK_LANGS or bool(_WORD_SHAPE[lang].match(word) and word.islower())


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
