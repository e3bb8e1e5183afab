"""L0 -> L1: text extraction with fallbacks, the UltraData L1 cleaning rules, language identification.

The functions are plain Python (tested on hand-made documents); the classes wrap them as datatrove pipeline
steps, so the same rules run in a local process pool, a Slurm array or a Ray cluster:

    FallbackHtmlExtractor()       trafilatura -> inscriptis -> the standard library's HTML parser
    UltraDataL1Cleaner(rules)     normalises characters and lines, then drops by rule ("dropped_<rule>" stats)
    LanguageIdFilter(["en"])      py3langid (its model ships in the wheel: nothing to download)

The rules, after UltraData-Math's released L1 cleaner:
  1. remove zero-width, bidi-control, other control characters (tab and newline kept) and soft hyphens;
     no-break spaces become spaces; private-use characters are removed
  2. three or more newlines (with any blanks on the lines between) collapse to one blank line
  3. navigation-bar and page-button lines are dropped (NAV_LINE / BUTTON_LINE below, our own lists: the released
     lists target Chinese sites), and so are lines with no letter or digit (table rules such as "| |" that HTML
     extraction leaves behind)
  4. a document of at most 200 characters with no "." or "," is dropped ("short_no_punctuation"); we also count
     the CJK full stop and commas (。，、), which the released rule, looking for ASCII marks only, misses
  5. a document outside the length bounds is dropped ("too_short" / "too_long").

The released quirk in rule 5: the bounds (80 to 1,000,000) are counted in characters whatever the language,
although the released code has a word-count helper it never calls. A Chinese sentence of 60 characters holds
about as much as 40 English words (some 240 characters), so counting characters drops short but complete CJK
documents that an English document of the same content would pass. We count "words" by default: a run of
non-space characters is one word, and each CJK ideograph, kana or hangul syllable is one word of its own
(`count_words`); the bounds are then 15 to 200,000 words (80 characters of English is about 15 words).
`length_unit="chars"` restores the released rule exactly.
"""
from __future__ import annotations

import dataclasses
import html.parser
import re
import unicodedata

from jaxsuite.core.extras import require

require("datatrove", extra="data", for_="jaxsuite.tiers (tiered data management)")
from datatrove.data import Document
from datatrove.pipeline.extractors.base import BaseExtractor
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import WordTokenizer

# ------------------------------------------------------------------------------------------------------------
# Rule 1: characters
# ------------------------------------------------------------------------------------------------------------
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"          # zero-width space/joiners, word joiner, BOM, soft hyphen
BIDI = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_REMOVE = re.compile(f"[{ZERO_WIDTH}{BIDI}]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")      # C0/C1 controls except \t \n \r
_PRIVATE_USE = re.compile("[\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]")
_NO_BREAK = re.compile("[\u00a0\u202f\u2007]")


def normalise_characters(text: str) -> tuple[str, dict[str, int]]:
    """Rule 1: the text without invisible, control and private-use characters, no-break spaces as spaces;
    and how many of each were changed."""
    counts = {}
    for name, pattern, repl in (("invisible", _REMOVE, ""), ("control", _CONTROL, ""),
                                ("private_use", _PRIVATE_USE, ""), ("no_break_space", _NO_BREAK, " ")):
        text, n = pattern.subn(repl, text)
        counts[name] = n
    return text.replace("\r\n", "\n").replace("\r", "\n"), counts


# ------------------------------------------------------------------------------------------------------------
# Rules 2 and 3: lines
# ------------------------------------------------------------------------------------------------------------
_BLANK_RUN = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")


def collapse_blank_lines(text: str) -> str:
    """Rule 2: three or more newlines, with blanks between them, become one blank line (two newlines)."""
    return _BLANK_RUN.sub("\n\n", text).strip()


NAV_WORDS = r"(home|about( us)?|contact( us)?|products?|blog|news|careers|support|log ?in|sign ?(up|in)|" \
            r"register|search|menu|faq|help|privacy( policy)?|terms( of (use|service))?|sitemap|shop|cart)"
NAV_LINE = [
    re.compile(rf"^\s*{NAV_WORDS}(\s*[|/»>·•-]\s*{NAV_WORDS})+\s*$", re.I),        # "Home | About | Contact"
    re.compile(r"^\s*(skip to (main )?content|back to top|scroll to top|toggle navigation|main menu)\s*$", re.I),
    re.compile(r"^\s*you are here\s*:.*$", re.I),                                       # breadcrumbs
]
BUTTON_LINE = [
    re.compile(r"^\s*(share|tweet|pin it|like|follow us)( (on|this))?( (facebook|twitter|x|linkedin|"
               r"whatsapp|email|pinterest))?\s*$", re.I),
    re.compile(r"^\s*(read more|continue reading|load more|show more|see all|view all|click here|print|"
               r"reply|quote|report|subscribe( to our newsletter)?|accept( all)?( cookies)?|reject all|"
               r"previous( page| post)?|next( page| post)?|older posts|newer posts)\s*[.!»>›]*\s*$", re.I),
    re.compile(r"^\s*[«‹<]?\s*(prev(ious)?|next)?\s*(\d+\s*){2,}(next|prev)?\s*[»›>]?\s*$", re.I),  # "« 1 2 3 »"
    re.compile(r"^\s*page \d+ of \d+\s*$", re.I),
    re.compile(r"^\s*we use cookies\b.*$", re.I),
    re.compile(r"^\s*(copyright|©|\(c\))\s*\d{4}.*all rights reserved\.?\s*$", re.I),
]
_HAS_WORD = re.compile(r"\w", re.UNICODE)


def line_kind(line: str) -> str | None:
    """"navigation", "button" or "no_text" for a line rule 3 drops; None for a line it keeps (blank lines are
    kept: they separate paragraphs)."""
    if not line.strip():
        return None
    if not _HAS_WORD.search(line):
        return "no_text"
    if any(p.match(line) for p in NAV_LINE):
        return "navigation"
    if any(p.match(line) for p in BUTTON_LINE):
        return "button"
    return None


def drop_boilerplate_lines(text: str) -> tuple[str, dict[str, int]]:
    """Rule 3: the text without navigation, button and text-free lines; how many of each were dropped."""
    counts = {"navigation": 0, "button": 0, "no_text": 0}
    kept = []
    for line in text.split("\n"):
        kind = line_kind(line)
        if kind is None:
            kept.append(line)
        else:
            counts[kind] += 1
    return "\n".join(kept), counts


# ------------------------------------------------------------------------------------------------------------
# Rules 4 and 5: documents
# ------------------------------------------------------------------------------------------------------------
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def count_words(text: str) -> int:
    """Words for the length bounds: each CJK ideograph, kana or hangul syllable is one word; every other run of
    non-space characters with a letter or digit in it is one word (punctuation alone is none)."""
    cjk = len(_CJK.findall(text))
    return cjk + sum(1 for w in _CJK.sub(" ", text).split() if _HAS_WORD.search(w))


@dataclasses.dataclass(frozen=True)
class L1Rules:
    short_chars: int = 200               # rule 4: at most this many characters and none of `punctuation`
    punctuation: str = ".,\u3002\uff0c\u3001"   # ". , 。 ， 、" (the released rule: "." and "," only)
    length_unit: str = "words"           # rule 5: "words" (our fix) or "chars" (the released rule)
    min_length: int = 15                 # words (80 characters under length_unit="chars")
    max_length: int = 200_000            # words (1,000,000 characters under "chars")

    @classmethod
    def released(cls) -> "L1Rules":
        """The released rule exactly: 80 to 1,000,000 characters in every language."""
        return cls(punctuation=".,", length_unit="chars", min_length=80, max_length=1_000_000)

    def __post_init__(self):
        if self.length_unit not in ("words", "chars"):
            raise ValueError(f"length_unit must be 'words' or 'chars', got {self.length_unit!r}")
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got {self.min_length}, {self.max_length}")

    def length(self, text: str) -> int:
        return count_words(text) if self.length_unit == "words" else len(text)


def document_verdict(text: str, rules: L1Rules) -> str | None:
    """Rules 4 and 5 on a cleaned text: the reason it is dropped, or None when it is kept."""
    if len(text) <= rules.short_chars and not any(p in text for p in rules.punctuation):
        return "short_no_punctuation"
    n = rules.length(text)
    if n < rules.min_length:
        return "too_short"
    if n > rules.max_length:
        return "too_long"
    return None


def clean_text(text: str, rules: L1Rules) -> tuple[str, str | None, dict[str, int]]:
    """All five rules: (cleaned text, the drop reason or None, per-change counts)."""
    text, counts = normalise_characters(text)
    text, line_counts = drop_boilerplate_lines(text)
    text = collapse_blank_lines(text)
    return text, document_verdict(text, rules), {**counts, **{f"lines_{k}": v for k, v in line_counts.items()}}


# ------------------------------------------------------------------------------------------------------------
# Extraction
# ------------------------------------------------------------------------------------------------------------
class _TextParser(html.parser.HTMLParser):
    """The last fallback: text nodes outside script/style, a newline at every block element."""
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "pre", "table", "section"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript"):
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def stdlib_html_text(page: str) -> str:
    parser = _TextParser()
    parser.feed(page)
    parser.close()
    return "\n".join(" ".join(line.split()) for line in "".join(parser.parts).split("\n")).strip()


def extract_with_fallbacks(page: str, min_chars: int = 100) -> tuple[str, str]:
    """(extractor name, text): trafilatura (precision mode, no comments); when it fails or keeps fewer than
    `min_chars` characters, inscriptis (layout-preserving, keeps tables); then the standard library's parser."""
    import trafilatura
    text = ""
    try:
        text = trafilatura.extract(page, favor_precision=True, include_comments=False, deduplicate=False) or ""
    except Exception:        # noqa: BLE001 - a parser failure on one page is a fallback, not a crash
        text = ""
    if len(text.strip()) >= min_chars:
        return "trafilatura", text
    try:
        from inscriptis import get_text
        text = get_text(page)
    except Exception:        # noqa: BLE001
        text = ""
    if len(text.strip()) >= min_chars:
        return "inscriptis", text
    return "stdlib", stdlib_html_text(page)


_SEP = "\x1f"        # joins the extractor's name to its text across datatrove's extraction sandbox (a child process)


class FallbackHtmlExtractor(BaseExtractor):
    """datatrove extractor: `extract_with_fallbacks` per document, in datatrove's sandbox (a per-document timeout);
    counts which extractor served ("extractor_<name>") and records it in metadata["extractor"]."""
    name = "fallback html extractor"

    def __init__(self, timeout: float = 10.0, min_chars: int = 100):
        super().__init__(timeout)
        self.min_chars = min_chars

    def extract(self, text: str) -> str:
        name, out = extract_with_fallbacks(text, self.min_chars)
        return f"{name}{_SEP}{out}" if out.strip() else ""

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in super().run(data, rank, world_size):
            name, doc.text = doc.text.split(_SEP, 1)
            doc.metadata["extractor"] = name
            self.stat_update(f"extractor_{name}")
            yield doc


class UltraDataL1Cleaner(BaseFilter):
    """datatrove filter: rewrites each document with rules 1-3 and drops it by rules 4-5; stats count the
    characters and lines changed ("chars_<kind>", "lines_<kind>") and the drops ("dropped_<rule>")."""
    name = "UltraData L1 cleaner"

    def __init__(self, rules: L1Rules | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.rules = rules or L1Rules()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        doc.text, reason, counts = clean_text(doc.text, self.rules)
        for key, n in counts.items():
            if n:
                self.stat_update(key if key.startswith("lines_") else f"chars_{key}", value=n)
        return (False, reason) if reason else True


class LanguageIdFilter(BaseFilter):
    """datatrove filter: keeps documents whose language (py3langid, normalised probability) is one of
    `languages` with probability >= `min_score`; records metadata["language"] and ["language_score"]."""
    name = "language id (py3langid)"

    def __init__(self, languages=("en",), min_score: float = 0.65, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.languages, self.min_score = tuple(languages), float(min_score)
        self._identifier = None

    def classify(self, text: str) -> tuple[str, float]:
        if self._identifier is None:           # built in the worker: the model is not pickled with the step
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
            self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        lang, score = self._identifier.classify(unicodedata.normalize("NFC", text[:5000]))
        return lang, float(score)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        lang, score = self.classify(doc.text)
        doc.metadata["language"], doc.metadata["language_score"] = lang, round(score, 4)
        self.stat_update(f"language_{lang}")
        if lang in self.languages and score >= self.min_score:
            return True
        return False, "language"


# ------------------------------------------------------------------------------------------------------------
# Words for MinHash shingles
# ------------------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


class RegexWordTokenizer(WordTokenizer):
    """Words for MinHash's 5-gram shingles without spaCy (datatrove's English default needs it): runs of letters
    and digits, each CJK character a word of its own (as count_words counts them)."""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in _SENTENCE.split(text) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for sentence in self.sent_tokenize(text):
            start = text.index(sentence, start)
            spans.append((start, start + len(sentence)))
            start += len(sentence)
        return spans
