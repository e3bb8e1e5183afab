"""The embedded L0 corpus: raw HTML pages that need no download, with work for every tier.

    pages = embedded_corpus(seed=0, scale=1.0)       # [Page(id, html, kind, quality, ...)]
    write_l0(pages, "runs/tiers/L0", shards=4)       # JSON lines {"id", "text": html, "metadata": {...}}

Kinds (the rubric score a careful annotator would give, 0-5, is `quality`; tests and the toy judge's
annotation guideline use it, the pipeline never reads it):

  reference   pydoc's HTML page of a standard-library module (navigation tables, signatures, docstrings)   4
  lesson      a short lesson on one stdlib function, written from its docstring, in a page with a menu        5
  news        a page of site boilerplate (menu, cookie banner, share buttons) around one real paragraph        2
  forum       chatter in a forum thread, with punctuation and enough length to pass the L1 rules              1
  spam        keyword-stuffed advertising copy, clean enough to pass the L1 rules                             0
  foreign     German, French, Spanish or Italian prose (removed by language identification)                  -
  stub        a short line without punctuation ("click here to continue") (removed by the L1 rules)          -
  tiny        a page whose text is under the length bound (removed by the L1 rules)                          -
  duplicate   an exact copy of another page (removed by exact dedup)                                          -
  near        another page with a few words changed and a footer line (removed by MinHash dedup)              -

A share of pages also carries zero-width, bidi, private-use and no-break characters and runs of blank lines,
which the L1 cleaner must normalise without dropping the page. Everything is deterministic in `seed`.
"""
from __future__ import annotations

import dataclasses
import html as htmllib
import importlib
import inspect
import json
import pydoc
import random
import warnings

from jaxsuite.core import files

# Pure-Python standard-library modules whose pydoc pages render quickly and have real documentation.
MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "cmd", "codecs", "colorsys", "configparser", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "filecmp", "fnmatch", "fractions",
    "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "imaplib", "ipaddress",
    "json", "keyword", "linecache", "locale", "logging", "mimetypes", "netrc", "numbers", "operator", "optparse",
    "pathlib", "pickle", "pprint", "queue", "quopri", "random", "reprlib", "sched", "secrets", "selectors",
    "shelve", "shlex", "shutil", "smtplib", "statistics", "string", "stringprep", "struct", "tabnanny", "tarfile",
    "tempfile", "textwrap", "timeit", "tokenize", "trace", "traceback", "types", "typing", "uuid", "warnings",
    "wave", "weakref", "webbrowser", "zipfile", "zipimport",
)
QUALITY = {"reference": 4, "lesson": 5, "news": 2, "forum": 1, "spam": 0}
MAX_PAGE_CHARS = 60_000       # a long pydoc page (typing, argparse) is cut: the toy pipeline's time goes elsewhere

# ------------------------------------------------------------------------------------------------------------
# Hand-written material for the generated kinds
# ------------------------------------------------------------------------------------------------------------
NAV_MENU = ["Home", "About", "Products", "Blog", "Contact", "Careers", "Support", "Login", "Sign up"]
BOILERPLATE_LINES = [
    "Skip to main content", "Accept all cookies", "We use cookies to improve your experience.",
    "Share on Facebook", "Share on Twitter", "Back to top", "Read more", "Subscribe to our newsletter",
    "Previous page", "Next page", "Page 1 of 3", "Copyright 2024 Example Media. All rights reserved.",
]
NEWS_PARAGRAPHS = [
    "The city council approved a new budget on Tuesday, allocating 12 million euros to road repairs and "
    "4 million to public libraries. Council members said the repairs will begin in March.",
    "A local bakery won the regional bread competition for the third year in a row. The owner, who opened "
    "the shop in 1998, credited her staff and a sourdough starter older than the shop itself.",
    "Heavy rain closed two bridges over the river on Sunday. Officials expect both to reopen by Thursday "
    "after engineers inspect the supports.",
    "The university announced that its library will stay open until midnight during the exam period, "
    "starting on the first of December.",
]
FORUM_LINES = [
    "thanks a lot, that worked for me!!", "lol same problem here, anyone?", "bump, still no answer...",
    "did you try turning it off and on again?", "idk man, it just stopped working yesterday.",
    "my cousin had the same thing, he just bought a new one.", "following, I want to know too.",
    "ok nevermind, fixed it somehow, no idea how.", "this forum is so slow today, haha.",
    "can someone pls help, I have been stuck for hours.", "yeah, me too, super annoying.",
]
SPAM_WORDS = ["cheap", "best", "discount", "watches", "deal", "buy", "now", "free", "shipping", "sale",
              "offer", "luxury", "price", "limited", "online", "shop", "top", "brand", "save", "today"]
FOREIGN = {
    "de": ["Die Stadt liegt an einem breiten Fluss, und im Sommer sitzen die Menschen gern am Ufer.",
           "Am Morgen fährt der erste Zug um sechs Uhr, und viele Pendler lesen dabei die Zeitung.",
           "Das Museum zeigt eine Sammlung alter Landkarten, die über dreihundert Jahre alt sind.",
           "Wer das Rezept nachkochen möchte, braucht Mehl, Eier, Milch und ein wenig Geduld."],
    "fr": ["La ville se trouve au bord d'une grande rivière, et les habitants aiment s'y promener le soir.",
           "Le premier train part à six heures du matin, et beaucoup de voyageurs lisent le journal.",
           "Le musée présente une collection de cartes anciennes qui ont plus de trois cents ans.",
           "Pour réussir cette recette, il faut de la farine, des œufs, du lait et un peu de patience."],
    "es": ["La ciudad está junto a un río ancho, y en verano la gente se sienta en la orilla.",
           "El primer tren sale a las seis de la mañana, y muchos viajeros leen el periódico.",
           "El museo muestra una colección de mapas antiguos que tienen más de trescientos años.",
           "Para preparar la receta se necesita harina, huevos, leche y un poco de paciencia."],
    "it": ["La città si trova su un fiume largo, e d'estate la gente si siede volentieri sulla riva.",
           "Il primo treno parte alle sei del mattino, e molti pendolari leggono il giornale.",
           "Il museo espone una collezione di carte geografiche antiche di oltre trecento anni.",
           "Per preparare la ricetta servono farina, uova, latte e un po' di pazienza."],
}
STUBS = ["click here to continue", "loading please wait", "log in to see this content", "page not found",
         "404 not found", "javascript is required", "subscribe now", "under construction"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202e", "\u2066", "\u00ad"]
PRIVATE_USE = ["\ue000", "\ue0ff", "\uf8ff"]


@dataclasses.dataclass(frozen=True)
class Page:
    id: str
    html: str
    kind: str
    quality: int | None          # the rubric score (None for the kinds L0 -> L1 must remove)
    url: str
    source_id: str = ""          # for duplicate / near: the page copied


def _page(title: str, body_html: str, *, menu: bool) -> str:
    nav = "<nav><ul>" + "".join(f"<li><a href='/{m.lower()}'>{m}</a></li>" for m in NAV_MENU) + "</ul></nav>" \
        if menu else ""
    return (f"<!DOCTYPE html><html><head><title>{htmllib.escape(title)}</title></head><body>{nav}"
            f"<main><article><h1>{htmllib.escape(title)}</h1>{body_html}</article></main>"
            f"<footer><p>Copyright 2024. All rights reserved.</p></footer></body></html>")


def _paragraphs(texts: list[str]) -> str:
    return "".join(f"<p>{htmllib.escape(t)}</p>" for t in texts)


def _pydoc_page(name: str) -> str:
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
    return page[:MAX_PAGE_CHARS]


def _functions(name: str) -> list[tuple[str, str, str]]:
    """(qualified name, signature, first docstring paragraph) of a module's documented public functions."""
    module = importlib.import_module(name)
    out = []
    for attr in sorted(getattr(module, "__all__", None) or dir(module)):
        obj = getattr(module, attr, None)
        if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        first = " ".join(doc.split("\n\n")[0].split())
        if len(first) < 40 or not first.endswith("."):
            continue
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        out.append((f"{name}.{attr}", sig, first))
    return out


def _lesson(name: str, sig: str, summary: str, rng: random.Random) -> tuple[str, str]:
    module = name.rsplit(".", 1)[0]
    opening = rng.choice(["In this lesson we study", "This short lesson explains", "Today we look at"])
    body = [f"{opening} the function {name} from the {module} module of the Python standard library.",
            f"Its signature is {name.rsplit('.', 1)[1]}{sig}.", f"The documentation says: {summary}",
            rng.choice([f"To use it, first import the {module} module, then call the function with the arguments "
                        "shown in the signature.",
                        f"A good exercise is to call {name} in the interpreter and compare the result with the "
                        "description above."]),
            "Remember that reading the documentation carefully saves time when a program behaves unexpectedly."]
    return f"Lesson: {name}", _paragraphs(body)


def _noise(text: str, rng: random.Random) -> str:
    """Inserts invisible, bidi, private-use and no-break characters and a run of blank lines (what L1 removes)."""
    chars = list(text)
    for _ in range(max(2, len(chars) // 400)):
        i = rng.randrange(len(chars))
        chars.insert(i, rng.choice(INVISIBLE + PRIVATE_USE + ["\u00a0"]))
    return "".join(chars).replace("</p><p>", "</p>\n\n\n\n<p>", 1)


def _near_copy(page: Page, rng: random.Random, index: int) -> Page:
    """A few words of the page's visible text changed and a footer line added: a near duplicate."""
    words = page.html.split(" ")
    for _ in range(3):
        i = rng.randrange(len(words))
        if "<" not in words[i] and ">" not in words[i]:
            words[i] = rng.choice(["indeed", "also", "really", "simply"])
    html = " ".join(words).replace("</article>", "<p>Updated on Monday.</p></article>")
    return Page(f"near-{index:04d}", html, "near", None, page.url + "?v=2", page.id)


def embedded_corpus(seed: int = 0, scale: float = 1.0) -> list[Page]:
    """The L0 pages (see the module docstring), shuffled; `scale` multiplies every kind's count (1.0: about
    420 pages, 0.1: about 45 for tests)."""
    rng = random.Random(seed)

    def count(n: int) -> int:
        return max(1, round(n * scale))

    pages: list[Page] = []
    modules = list(MODULES)
    rng.shuffle(modules)
    for name in modules[:count(60)]:
        pages.append(Page(f"reference-{name}", _pydoc_page(name), "reference", QUALITY["reference"],
                          f"https://docs.example.org/library/{name}.html"))
    functions = [f for name in modules for f in _functions(name)]
    rng.shuffle(functions)
    for i, (name, sig, summary) in enumerate(functions[:count(80)]):
        title, body = _lesson(name, sig, summary, rng)
        pages.append(Page(f"lesson-{i:04d}", _page(title, body, menu=True), "lesson", QUALITY["lesson"],
                          f"https://learn.example.org/{name}"))
    for i in range(count(50)):
        lines = [rng.choice(BOILERPLATE_LINES) for _ in range(4)]
        body = "".join(f"<div>{t}</div>" for t in lines[:2]) + f"<div>{' | '.join(NAV_MENU[:5])}</div>"
        body += _paragraphs([rng.choice(NEWS_PARAGRAPHS)]) + "".join(f"<div>{t}</div>" for t in lines[2:])
        pages.append(Page(f"news-{i:04d}", _page("Local news", body, menu=False), "news", QUALITY["news"],
                          f"https://news.example.com/{i}"))
    for i in range(count(50)):
        posts = [rng.choice(FORUM_LINES) for _ in range(rng.randint(5, 9))]
        pages.append(Page(f"forum-{i:04d}", _page("Re: help!!", _paragraphs(posts), menu=True), "forum",
                          QUALITY["forum"], f"https://forum.example.net/t/{i}"))
    for i in range(count(50)):
        sentences = [" ".join(rng.choice(SPAM_WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "!"
                     for _ in range(rng.randint(5, 9))]
        pages.append(Page(f"spam-{i:04d}", _page("BEST DEALS", _paragraphs(sentences), menu=True), "spam",
                          QUALITY["spam"], f"https://deals.example.biz/{i}"))
    for i in range(count(40)):
        lang = sorted(FOREIGN)[i % len(FOREIGN)]
        sentences = rng.sample(FOREIGN[lang], 3) + rng.sample(FOREIGN[lang], 2)
        pages.append(Page(f"foreign-{lang}-{i:04d}", _page(lang, _paragraphs(sentences), menu=False), "foreign",
                          None, f"https://{lang}.example.eu/{i}"))
    for i in range(count(20)):
        pages.append(Page(f"stub-{i:04d}", _page("", _paragraphs([rng.choice(STUBS)]), menu=False), "stub",
                          None, f"https://example.org/stub/{i}"))
    for i in range(count(10)):
        pages.append(Page(f"tiny-{i:04d}", _page("", _paragraphs(["Too short, sorry."]), menu=False), "tiny", None,
                          f"https://example.org/tiny/{i}"))
    originals = [p for p in pages if p.quality is not None and p.kind != "reference"]
    for i in range(count(30)):
        src = rng.choice(originals)
        pages.append(Page(f"duplicate-{i:04d}", src.html, "duplicate", None, src.url + "#copy", src.id))
    for i in range(count(30)):
        pages.append(_near_copy(rng.choice([p for p in originals if p.kind in ("lesson", "news")]), rng, i))
    noisy = []
    for p in pages:
        if p.kind in ("lesson", "forum", "news") and rng.random() < 0.3:
            p = dataclasses.replace(p, html=_noise(p.html, rng))
        noisy.append(p)
    rng.shuffle(noisy)
    return noisy


def write_l0(pages: list[Page], folder: str, shards: int) -> list[str]:
    """The pages as `shards` JSON-lines files (`00000.jsonl` ...) of datatrove's document layout: the HTML as
    "text", the rest under "metadata". Written atomically; returns the paths."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    paths = []
    for s in range(shards):
        rows = [json.dumps({"id": p.id, "text": p.html,
                            "metadata": {"url": p.url, "kind": p.kind, "quality": p.quality, "source_id": p.source_id}},
                           ensure_ascii=False) + "\n" for p in pages[s::shards]]
        paths.append(files.atomic_write_text(files.join_path(folder, f"{s:05d}.jsonl"), "".join(rows)))
    return paths
