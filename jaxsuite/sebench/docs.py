"""The library's documentation under the new names, rewritten by rules (no LLM), and the api_doc.jsonl format.

    docs = rewrite_docs(numpy_mapping())                 # -> [ApiDoc(original_name="mean", curr_name="kocito", ...)]
    assert not [d for d in docs if library_mentions(d.rewritten_doc)]
    save_api_docs(workdir / "api_doc.jsonl", docs); docs = load_api_docs(path)   # the released record format

The release rewrote NumPy's docstrings with an LLM (one of its 278 docs still says "numpy"). Here the rewrite
is a fixed set of rules over numpydoc text, and a check proves that no doc names the library afterwards:
  - the signature heads the doc under the new name (`zwc.kocito(a, axis=None, ...)`);
  - qualified references (`np.mean`, `numpy.linalg.inv`) become `zwc.kocito`, `zwc.rfx.quvohe`; an unmapped
    `np.f` becomes `zwc.f`, as the release does (the package has no such function: an example that uses one,
    or an array method, fails there as it would for the released docs); `ndarray` becomes `zwc.ZWCArray`;
  - mapped names used as code are renamed: in the See Also block, in backticks, as a call `mean(`;
  - array printouts in the examples read `ZWCArray(...)`, and what is left of the library's name reads zwc.
Names used as plain English words ("the sum of ...") are left alone: renaming every `sum` would garble prose.
`refine` (optional) is a hook for a model to polish each rewritten doc; its output is checked the same way.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
from typing import Callable, Iterable

from etils import epath

from jaxsuite.core import files
from jaxsuite.sebench.names import NUMPY_ALIASES, NameMapping

LIBRARY_MENTION = re.compile(r"numpy|\bnp\.", re.IGNORECASE)
HEADER = re.compile(r"^([A-Z][A-Za-z ]+)\n-{3,}\s*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class ApiDoc:
    """One function's documentation; the fields of the released api_doc.jsonl."""
    original_name: str           # "mean", or "linalg.inv" for the submodule
    curr_name: str               # "kocito", or "rfx.quvohe"
    docstring: str               # the library's own text
    rewritten_doc: str
    func_mapping: dict = dataclasses.field(default_factory=dict)    # the names this doc's rewrite renamed


def doc_key(name: str) -> str:
    """A function's key among the docs, however a file spells it: "numpy.linalg.inv", "np.linalg.inv" and
    "linalg.inv" are all "linalg.inv"; "numpy.mean" is "mean"."""
    return re.sub(r"^(?:numpy|np)\.", "", name.strip())


def library_mentions(text: str) -> list[str]:
    """The places where `text` still names the library (empty when it is clean)."""
    return [text[max(0, m.start() - 30):m.end() + 30].replace("\n", " ") for m in LIBRARY_MENTION.finditer(text)]


def original_doc(name: str, *, library: str = "numpy", submodule: str | None = None) -> tuple[str, str]:
    """(signature, docstring) of the library's function; the signature is '' where Python cannot read it (ufuncs
    carry theirs as the first line of the docstring)."""
    module = importlib.import_module(library if submodule is None else f"{library}.{submodule}")
    aliases = NUMPY_ALIASES["main" if submodule is None else "sub"] if library == "numpy" else {}
    function = getattr(module, name, None) or getattr(module, aliases.get(name, name))
    doc = inspect.getdoc(function) or ""
    try:
        signature = str(inspect.signature(function))
    except (TypeError, ValueError):
        signature = ""
    return signature, doc


def _rename_code(text: str, mapping: NameMapping, renamed: dict, *, in_submodule: bool = False) -> str:
    """Renames code references; in a submodule's doc a bare call `inv(` means the submodule's function."""
    package, sub = mapping.package, f"{mapping.package}.{mapping.subpackage}"

    def qualified(match: re.Match) -> str:
        in_sub, name = bool(match.group(1)), match.group(2)
        table = mapping.sub if in_sub else mapping.main
        if name == "ndarray":
            return f"{package}.ZWCArray"
        if name in table:
            renamed[("linalg." if in_sub else "") + name] = table[name]
            return f"{sub if in_sub else package}.{table[name]}"
        return f"{sub if in_sub else package}.{name}"

    text = re.sub(r"^(\s*>>> )import numpy as np\s*$", rf"\1import {package}", text, flags=re.MULTILINE)
    def from_sub(match: re.Match) -> str:
        names = [n.strip() for n in match.group(1).split(",")]
        return f"from {sub} import " + ", ".join(mapping.sub.get(n, n) for n in names)

    text = re.sub(r"from (?:numpy|np)\.linalg import ([\w, ]+)", from_sub, text)
    text = re.sub(r"\b(?:numpy|np)\.linalg\b(?!\.)", sub, text)
    text = re.sub(r"\b(?:numpy|np)\.(linalg\.)?([A-Za-z_]\w*)", qualified, text)
    text = re.sub(r"(?<![\w.])ndarray\b", f"{package}.ZWCArray", text)

    def bare(match: re.Match) -> str:
        prefix, name, suffix = match.group(1), match.group(2), match.group(3)
        if name.startswith("linalg."):
            short = name[len("linalg."):]
            if short in mapping.sub:
                renamed[name] = mapping.sub[short]
                return f"{prefix}{mapping.subpackage}.{mapping.sub[short]}{suffix}"
            return match.group(0)
        if in_submodule and name in mapping.sub:
            renamed["linalg." + name] = mapping.sub[name]
            return f"{prefix}{mapping.sub[name]}{suffix}"
        if name in mapping.main:
            renamed[name] = mapping.main[name]
            return f"{prefix}{mapping.main[name]}{suffix}"
        return match.group(0)

    # backticked names (`mean`, ``mean``, :func:`mean`) and calls `mean(` not after a dot (a method) or a letter
    text = re.sub(r"(`+)((?:linalg\.)?[A-Za-z_]\w*)(`+)", bare, text)
    text = re.sub(r"(^|[^\w.])((?:linalg\.)?[A-Za-z_]\w*)(\()", bare, text, flags=re.MULTILINE)
    return text


def _rename_see_also(text: str, mapping: NameMapping, renamed: dict) -> str:
    """Renames the entries of a numpydoc "See Also" block: lines `name : text` or `name, other`."""
    headers = list(HEADER.finditer(text))
    for i, header in enumerate(headers):
        if header.group(1).strip() != "See Also":
            continue
        start, end = header.end(), headers[i + 1].start() if i + 1 < len(headers) else len(text)
        block = text[start:end]

        def entry(match: re.Match) -> str:
            names = [n.strip() for n in match.group(2).split(",")]
            out = []
            for n in names:
                short = n.split(".")[-1]
                if n.startswith(("linalg.", f"{mapping.package}.{mapping.subpackage}.")) and short in mapping.sub:
                    renamed["linalg." + short] = mapping.sub[short]
                    out.append(f"{mapping.subpackage}.{mapping.sub[short]}")
                elif "." not in n and n in mapping.main:
                    renamed[n] = mapping.main[n]
                    out.append(mapping.main[n])
                else:
                    out.append(n)
            return match.group(1) + ", ".join(out) + match.group(3)

        block = re.sub(r"^(\s*)([\w.]+(?:\s*,\s*[\w.]+)*)(\s*(?::.*)?)$", entry, block, flags=re.MULTILINE)
        text = text[:start] + block + text[end:]
    return text


def rewrite_doc(name: str, mapping: NameMapping, *, submodule: bool = False, library: str = "numpy",
                submodule_name: str = "linalg") -> ApiDoc:
    """The rewritten documentation of one function (see the module docstring for the rules)."""
    table = mapping.sub if submodule else mapping.main
    new_name = table[name]
    signature, doc = original_doc(name, library=library, submodule=submodule_name if submodule else None)
    renamed: dict = {("linalg." if submodule else "") + name: new_name}
    qualified_new = mapping.qualified(name, submodule=submodule)
    lines = doc.split("\n")
    if lines and re.match(rf"{re.escape(name)}\(", lines[0]):       # a ufunc's own signature line
        signature, lines = lines[0][len(name):], lines[1:]
    body = "\n".join(lines).strip("\n")
    # printed results in the examples (lines not starting with >>> or ...) show the package's array type
    body = re.sub(r"^(?!\s*(?:>>>|\.\.\.))(.*)$",
                  lambda m: re.sub(r"(?<![\w.])array\(", "ZWCArray(", m.group(0)), body, flags=re.MULTILINE)
    body = _rename_see_also(body, mapping, renamed)
    text = f"{qualified_new}{signature}\n\n{body}".strip() + "\n"
    text = _rename_code(text, mapping, renamed, in_submodule=submodule)
    text = re.sub(r"numpy", mapping.package, text, flags=re.IGNORECASE)
    original = f"linalg.{name}" if submodule else name
    current = f"{mapping.subpackage}.{new_name}" if submodule else new_name
    return ApiDoc(original_name=original, curr_name=current, docstring=doc, rewritten_doc=text,
                  func_mapping=renamed)


def rewrite_docs(mapping: NameMapping, *, library: str = "numpy", submodule_name: str = "linalg",
                 names: Iterable[str] | None = None,
                 refine: Callable[[ApiDoc], str] | None = None) -> list[ApiDoc]:
    """Every mapped function's doc (or those of `names`: "mean", "linalg.inv"), checked free of the library's name.

    refine(doc) -> text: a model's polish of a rewritten doc; a refined text that names the library is refused."""
    wanted = None if names is None else set(names)
    docs = []
    for submodule, table in ((False, mapping.main), (True, mapping.sub)):
        for name in table:
            key = f"linalg.{name}" if submodule else name
            if wanted is not None and key not in wanted:
                continue
            doc = rewrite_doc(name, mapping, submodule=submodule, library=library, submodule_name=submodule_name)
            if refine is not None:
                doc = dataclasses.replace(doc, rewritten_doc=refine(doc))
            leaks = library_mentions(doc.rewritten_doc)
            if leaks:
                raise ValueError(f"the rewritten doc of {key} still names the library: {leaks[0]!r}")
            docs.append(doc)
    return docs


def package_docs(docs: Iterable[ApiDoc], mapping: NameMapping) -> dict:
    """{"main": {new_name: text}, "sub": {...}}: what build_package shows in help()."""
    out: dict = {"main": {}, "sub": {}}
    prefix = mapping.subpackage + "."
    for d in docs:
        part, name = ("sub", d.curr_name[len(prefix):]) if d.curr_name.startswith(prefix) else ("main", d.curr_name)
        out[part][name] = d.rewritten_doc
    return out


def save_api_docs(path, docs: Iterable[ApiDoc]) -> None:
    files.atomic_write_text(epath.Path(path), "".join(json.dumps(dataclasses.asdict(d)) + "\n" for d in docs))


def load_api_docs(path) -> list[ApiDoc]:
    """Reads an api_doc.jsonl (ours or the released one); errors name the file and line."""
    required = ("original_name", "curr_name", "rewritten_doc")
    if not epath.Path(path).exists():
        raise FileNotFoundError(f"api docs {path} do not exist")
    docs = []
    for line, record in files.iter_jsonl_objects(epath.Path(path)):
        missing = [k for k in required if not isinstance(record.get(k), str)]
        if missing:
            raise ValueError(f"{path}:{line}: an api doc needs the text fields {missing}")
        docs.append(ApiDoc(original_name=record["original_name"], curr_name=record["curr_name"],
                           docstring=record.get("docstring", ""), rewritten_doc=record["rewritten_doc"],
                           func_mapping=dict(record.get("func_mapping") or {})))
    if not docs:
        raise ValueError(f"{path}: no api docs in the file")
    return docs
