"""Chemistry reasoning tasks for the toy LatentChem reproduction: generation, checking, rewards, real data.

LatentChem (arXiv 2602.07075) trains a chemistry LLM three ways: answer only, step-by-step chain of thought
(CoT), and latent reasoning where the CoT steps are replaced by continuous "thoughts". Comparing those at
toy scale needs tasks that are

* short enough for a tiny byte-level model (questions under ~60 characters, 2-6 steps under ~40 each);
* exactly reproducible from a seed, so the three training forms see the same examples;
* labelled by RDKit, never by hand, with a programmatic CoT (`steps`) that really leads to the answer, so
  curriculum stages that hide the first k steps hide real reasoning;
* checkable for open-ended answers: an edit or an optimisation has many correct answers, so correctness is
  a chemical criterion, not string equality.

Task families follow ChemCoTBench's split (molecule understanding / editing / optimisation):
  understanding  rings, aromatic_atoms, hbd, hba, has_group, formula
  editing        add_group, remove_group, substitute_group
  optimisation   increase_logp, increase_qed

Answer checking (`check_answer`, never raises):
  int / formula / yes-no   normalised string equality with the RDKit label;
  editing                  the answer parses to one molecule, the named group counts change by exactly the
                           edit (+1 / -1 / one of each), and the rest is preserved: stripping one occurrence
                           of the added group from the answer gives back the source (add), the answer is one
                           of the ways to strip the removed group from the source (remove), or both strips
                           meet at a common molecule (substitute). This is stricter than ChemCoTBench's own
                           evaluator, which only compares group counts, and it accepts any position;
  optimisation             the answer parses, its property (Crippen logP or QED) is strictly higher than the
                           source's, and its Morgan Tanimoto similarity to the source is at least
                           `SIMILARITY_THRESHOLD` (0.4), which rules out "answer with any greasy molecule".

Rewards mirror LatentChem's GRPO rewards: 1.0 for a non-empty <answer>...</answer>, 0.5 when the answer has
the right type, 1.0 when it is correct. `read_chemcot` loads ChemCoTBench / ChemCoTDataset rows (see its
docstring for the format) into the same `ChemExample` type.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from jaxsuite.core.extras import require

require("rdkit", extra="chem", for_="jaxsuite.latent (LatentChem)")
from rdkit import Chem
from rdkit.Chem import Lipinski
from rdkit.Chem.rdMolDescriptors import CalcMolFormula, CalcNumRings

from jaxsuite.latent.chem_molecules import (
    FUNCTIONAL_GROUPS,
    PROPERTIES,
    SIMILARITY_THRESHOLD,
    MoleculeGenerator,
    attach_group,
    canonical,
    count_group,
    describe_site,
    host_atoms,
    parse_smiles,
    similarity,
    single_group_edits,
    strip_group,
    stripped_smiles,
)

UNDERSTANDING_TASKS = ("rings", "aromatic_atoms", "hbd", "hba", "has_group", "formula")
EDITING_TASKS = ("add_group", "remove_group", "substitute_group")
OPTIMISATION_TASKS = ("increase_logp", "increase_qed")
KNOWN_TASKS: tuple[str, ...] = UNDERSTANDING_TASKS + EDITING_TASKS + OPTIMISATION_TASKS

ANSWER_TYPES = ("int", "formula", "yesno", "smiles")
TASK_ANSWER_TYPE: dict[str, str] = {
    **{kind: "int" for kind in ("rings", "aromatic_atoms", "hbd", "hba")},
    "has_group": "yesno",
    "formula": "formula",
    **{kind: "smiles" for kind in EDITING_TASKS + OPTIMISATION_TASKS},
}

_OPT_PROPERTY = {"increase_logp": "logp", "increase_qed": "qed"}
_PROPERTY_LABEL = {"logp": "logP", "qed": "QED"}


@dataclass(frozen=True)
class ChemExample:
    """One question. `source` is the input molecule (canonical SMILES); `steps` end at the answer.

    `meta` carries what the checker needs beyond the text: "added_group" / "removed_group" for edits (the
    same keys ChemCoTBench uses), "property" for optimisation, and the raw row fields for ChemCoT data.
    """

    task: str
    question: str
    answer: str
    answer_type: str
    steps: list[str]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Understanding tasks


def _rings(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample:
    rings = mol.GetRingInfo().AtomRings()
    n = CalcNumRings(mol)
    steps = []
    for i, ring in enumerate(rings):
        aromatic = all(mol.GetAtomWithIdx(a).GetIsAromatic() for a in ring)
        steps.append(f"ring {i + 1}: {len(ring)} atoms" + (", aromatic" if aromatic else ""))
    steps = steps or ["no ring closure digits"]
    steps.append(f"rings = {n}")
    return ChemExample("rings", f"How many rings in {smiles}?", str(n), "int", steps, smiles)


def _element_counts(atoms: list[Chem.Atom]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for atom in atoms:
        counts[atom.GetSymbol()] = counts.get(atom.GetSymbol(), 0) + 1
    return counts


def _aromatic_atoms(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample:
    aromatic = [a for a in mol.GetAtoms() if a.GetIsAromatic()]
    steps = [f"aromatic {sym}: {k}" for sym, k in _element_counts(aromatic).items()] or ["no lowercase atoms"]
    steps.append(f"aromatic atoms = {len(aromatic)}")
    return ChemExample(
        "aromatic_atoms", f"Aromatic atoms in {smiles}?", str(len(aromatic)), "int", steps, smiles
    )


def _hbond(kind: str, smiles: str, mol: Chem.Mol) -> ChemExample:
    # RDKit's Lipinski definitions; the SMARTS give the per-element breakdown shown in the rationale
    if kind == "hbd":
        total, pattern, noun = Lipinski.NumHDonors(mol), Lipinski.HDonorSmarts, "donors"
    else:
        total, pattern, noun = Lipinski.NumHAcceptors(mol), Lipinski.HAcceptorSmarts, "acceptors"
    question = f"H-bond {noun} in"
    matched = sorted({m[0] for m in mol.GetSubstructMatches(pattern)})
    by_element = _element_counts([mol.GetAtomWithIdx(i) for i in matched])
    if sum(by_element.values()) == total:
        label = "{}-H donors: {}" if kind == "hbd" else "{} acceptors: {}"
        steps = [label.format(sym, k) for sym, k in by_element.items()] or [f"no N/O {noun}"]
    else:  # the per-atom breakdown disagrees with RDKit's count; never show a rationale that adds up wrong
        steps = ["count N-H/O-H" if kind == "hbd" else "count N and O acceptors"]
    steps.append(f"{noun} = {total}")
    return ChemExample(kind, f"{question} {smiles}?", str(total), "int", steps, smiles)


def _has_group(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample:
    counts = {name: count_group(mol, name) for name in FUNCTIONAL_GROUPS}
    present = [n for n, c in counts.items() if c > 0]
    absent = [n for n, c in counts.items() if c == 0]
    # balance yes/no so that "always yes" is not a good policy
    name = rng.choice(present) if present and (not absent or rng.random() < 0.5) else rng.choice(absent)
    answer = "yes" if counts[name] else "no"
    steps = [f"look for {name}", f"{name} found: {counts[name]}", f"answer: {answer}"]
    article = "an" if name[0] in "aeiou" else "a"
    question = f"Does {smiles} have {article} {name}?"
    return ChemExample("has_group", question, answer, "yesno", steps, smiles, {"group": name})


def _formula(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample:
    formula = CalcMolFormula(mol)
    counts: dict[str, int] = {}
    for atom in mol.GetAtoms():
        counts[atom.GetSymbol()] = counts.get(atom.GetSymbol(), 0) + 1
        if atom.GetTotalNumHs():
            counts["H"] = counts.get("H", 0) + atom.GetTotalNumHs()
    # Hill order: C, then H, then the rest alphabetically (no carbon: all alphabetically)
    symbols = sorted(counts)
    order = ["C", "H"] + [x for x in symbols if x not in ("C", "H")] if "C" in counts else symbols
    parts = [f"{sym}: {counts[sym]}" for sym in order if sym in counts]
    if len(parts) > 4:  # keep the rationale within 5 steps by pairing the heteroatoms
        parts = parts[:2] + [", ".join(parts[i : i + 2]) for i in range(2, len(parts), 2)]
    steps = parts + [f"formula: {formula}"]
    return ChemExample("formula", f"Formula of {smiles}?", formula, "formula", steps, smiles)


# ----------------------------------------------------------------------------------------------------------
# Editing tasks


def _group_word(name: str) -> str:
    return FUNCTIONAL_GROUPS[name][1]


def _add_group(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample | None:
    name = rng.choice(list(FUNCTIONAL_GROUPS))
    hosts = host_atoms(mol)
    rng.shuffle(hosts)
    before = count_group(mol, name)
    for host in hosts:
        product = attach_group(mol, host, name)
        if product is None:
            continue
        answer = canonical(product)
        example = ChemExample(
            "add_group",
            f"Add {name} to {smiles}",
            answer,
            "smiles",
            [
                f"{name} count: {before}",
                f"attach {_group_word(name)} at {describe_site(mol, host)}",
                f"{name} count: {before + 1}",
                f"result: {answer}",
            ],
            smiles,
            {"added_group": name},
        )
        if check_answer(example, answer):  # e.g. OH on an aldehyde carbon makes an acid, not a hydroxyl
            return example
    return None


def _remove_group(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample | None:
    present = [n for n in FUNCTIONAL_GROUPS if count_group(mol, n) > 0]
    rng.shuffle(present)
    for name in present:
        options = strip_group(mol, name)
        rng.shuffle(options)
        before = count_group(mol, name)
        for stripped in options:
            answer = canonical(stripped.mol)
            example = ChemExample(
                "remove_group",
                f"Remove {name} from {smiles}",
                answer,
                "smiles",
                [
                    f"{name} count: {before}",
                    f"delete {stripped.deleted} at {stripped.site}",
                    f"{name} count: {before - 1}",
                    f"result: {answer}",
                ],
                smiles,
                {"removed_group": name},
            )
            if check_answer(example, answer):
                return example
    return None


def _substitute_group(smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample | None:
    present = [n for n in FUNCTIONAL_GROUPS if count_group(mol, n) > 0]
    rng.shuffle(present)
    for removed in present:
        options = strip_group(mol, removed)
        rng.shuffle(options)
        added_choices = [n for n in FUNCTIONAL_GROUPS if n != removed]
        rng.shuffle(added_choices)
        for stripped in options:
            for added in added_choices:
                product = attach_group(stripped.mol, stripped.hosts[0], added) if stripped.hosts else None
                if product is None:
                    continue
                answer = canonical(product)
                example = ChemExample(
                    "substitute_group",
                    f"Replace {removed} with {added} in {smiles}",
                    answer,
                    "smiles",
                    [
                        f"{removed} count: {count_group(mol, removed)}",
                        f"delete {stripped.deleted} at {stripped.site}",
                        f"attach {_group_word(added)} there",
                        f"result: {answer}",
                    ],
                    smiles,
                    {"removed_group": removed, "added_group": added},
                )
                if check_answer(example, answer):
                    return example
    return None


# ----------------------------------------------------------------------------------------------------------
# Optimisation tasks


def _optimise(kind: str, smiles: str, mol: Chem.Mol, rng: random.Random) -> ChemExample | None:
    prop = _OPT_PROPERTY[kind]
    score = PROPERTIES[prop]
    base = score(mol)
    scored: list[tuple[float, str, str]] = []
    for product_smiles, description in single_group_edits(mol).items():
        product = Chem.MolFromSmiles(product_smiles)
        if similarity(mol, product) < SIMILARITY_THRESHOLD:
            continue
        value = score(product)
        if value > base + 1e-6:  # margin: a reference that only wins by float noise would be fragile
            scored.append((value, product_smiles, description))
    if not scored:
        return None  # only emit examples where an improving single-group edit exists
    scored.sort(key=lambda t: (-round(t[0], 6), t[1]))  # best first, ties broken by SMILES
    label = _PROPERTY_LABEL[prop]
    best_value, answer, best_description = scored[0]
    # show the best edit of each of the top two kinds of edit (several sites often tie for one kind)
    shown: dict[str, float] = {}
    for value, _, description in scored:
        if len(shown) < 2:
            shown.setdefault(description, value)
    steps = [f"{label} now: {base:.2f}"] + [f"{d}: {v:.2f}" for d, v in shown.items()]
    steps += [f"pick {best_description}", f"result: {answer}"]
    question = f"Increase {label} of {smiles}"
    return ChemExample(kind, question, answer, "smiles", steps, smiles, {"property": prop})


_Builder = Callable[[str, Chem.Mol, random.Random], "ChemExample | None"]

_BUILDERS: dict[str, _Builder] = {
    "rings": _rings,
    "aromatic_atoms": _aromatic_atoms,
    "hbd": lambda s, m, r: _hbond("hbd", s, m),
    "hba": lambda s, m, r: _hbond("hba", s, m),
    "has_group": _has_group,
    "formula": _formula,
    "add_group": _add_group,
    "remove_group": _remove_group,
    "substitute_group": _substitute_group,
    "increase_logp": lambda s, m, r: _optimise("increase_logp", s, m, r),
    "increase_qed": lambda s, m, r: _optimise("increase_qed", s, m, r),
}


def _validate_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = [kinds]
    unknown = [k for k in kinds if k not in KNOWN_TASKS]
    if unknown or not kinds:
        raise ValueError(f"unknown task kind(s) {unknown or kinds!r}; known: {', '.join(KNOWN_TASKS)}")
    return tuple(kinds)


class TaskGenerator:
    """Samples `ChemExample`s of the requested kinds, uniformly over kinds, deterministically from an rng.

    Everything random (molecule, group, site, kind) is drawn from the `random.Random` passed to `sample`, so
    `batch(n, seed)` is a pure function of (kinds, max_heavy_atoms, n, seed).
    """

    def __init__(self, kinds: Sequence[str] | None = None, seed: int = 0, max_heavy_atoms: int = 12) -> None:
        self.kinds = _validate_kinds(kinds) if kinds is not None else KNOWN_TASKS
        self.molecules = MoleculeGenerator(seed, max_heavy_atoms=max_heavy_atoms)
        self._rng = random.Random(seed)

    def sample(self, rng: random.Random | None = None) -> ChemExample:
        rng = rng if rng is not None else self._rng
        return self.sample_kind(rng.choice(self.kinds), rng)

    def sample_kind(self, kind: str, rng: random.Random | None = None) -> ChemExample:
        _validate_kinds([kind])
        rng = rng if rng is not None else self._rng
        for _ in range(500):  # some molecules admit no example (nothing to remove, no improving edit)
            mol = self.molecules.sample_mol(rng)
            example = _BUILDERS[kind](canonical(mol), mol, rng)
            if example is not None:
                return example
        raise RuntimeError(f"could not build a {kind!r} example in 500 molecules")

    def batch(self, n: int, seed: int = 0) -> list[ChemExample]:
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------------
# Checking


def _single_molecule(text: str) -> Chem.Mol | None:
    mol = parse_smiles(text)
    if mol is None or mol.GetNumAtoms() == 0 or len(Chem.GetMolFrags(mol)) != 1:
        return None  # mixtures ("CCO.Cl") are not an edited molecule
    return mol


def _parse_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def _yes_no(text: str) -> str:
    return text.strip().rstrip(".").lower()


def check_edit(source: str, answer: str, removed: str | None, added: str | None) -> bool:
    """Is `answer` `source` with one `removed` group taken away and/or one `added` group put on?"""
    src, ans = _single_molecule(source), _single_molecule(answer)
    if src is None or ans is None:
        return False
    if removed is not None and count_group(ans, removed) != count_group(src, removed) - 1:
        return False
    if added is not None and count_group(ans, added) != count_group(src, added) + 1:
        return False
    if removed is not None and added is not None:
        return bool(stripped_smiles(src, removed) & stripped_smiles(ans, added))
    if added is not None:
        return canonical(src) in stripped_smiles(ans, added)
    if removed is not None:
        return canonical(ans) in stripped_smiles(src, removed)
    return False


def check_optimisation(source: str, answer: str, prop: str) -> bool:
    """Strictly better `prop` than the source while staying similar (>= SIMILARITY_THRESHOLD) to it."""
    src, ans = _single_molecule(source), _single_molecule(answer)
    if src is None or ans is None:
        return False
    score = PROPERTIES[prop]
    return score(ans) > score(src) and similarity(src, ans) >= SIMILARITY_THRESHOLD


def _same_answer(answer_type: str, reference: str, answer: str) -> bool:
    if answer_type == "int":
        got, want = _parse_int(answer), _parse_int(reference)
        return got is not None and got == want
    if answer_type == "formula":
        got, want = re.sub(r"\s+", "", answer), re.sub(r"\s+", "", reference)
        return bool(want) and got == want
    if answer_type == "yesno":
        got, want = _yes_no(answer), _yes_no(reference)
        return got in ("yes", "no") and got == want
    if answer_type == "smiles":
        got, want = _single_molecule(answer), parse_smiles(reference)
        return got is not None and want is not None and canonical(got) == canonical(want)
    return bool(reference.strip()) and answer.strip().lower() == reference.strip().lower()


def check_answer(example: ChemExample, answer_text: str | None) -> bool:
    """True when `answer_text` answers `example` correctly (criteria in the module docstring). Never raises."""
    try:
        if not isinstance(answer_text, str) or not answer_text.strip():
            return False
        answer = answer_text.strip()
        meta = example.meta or {}
        if example.task in EDITING_TASKS:
            removed, added = meta.get("removed_group"), meta.get("added_group")
            known = all(g is None or g in FUNCTIONAL_GROUPS for g in (removed, added))
            if known and (removed or added):
                return check_edit(example.source, answer, removed, added)
            # ChemCoT rows naming groups outside our table (aldehyde, halo, ...): fall back to the reference
        if example.task in OPTIMISATION_TASKS:
            return check_optimisation(example.source, answer, _OPT_PROPERTY[example.task])
        return _same_answer(example.answer_type, example.answer, answer)
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------------------
# GRPO rewards (LatentChem's three reward terms)

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", flags=re.DOTALL | re.IGNORECASE)
_FORMULA_RE = re.compile(r"(?:[A-Z][a-z]?\d*)+[+-]?\d*")


def extract_answer(text: str | None) -> str | None:
    """Stripped content of the last <answer>...</answer> in `text`, or None when there is none."""
    if not isinstance(text, str):
        return None
    found = _ANSWER_RE.findall(text)
    return found[-1].strip() if found else None


def format_reward(text: str | None) -> float:
    """1.0 when the completion contains a non-empty <answer>...</answer>, else 0.0."""
    return 1.0 if extract_answer(text) else 0.0


def type_reward(example: ChemExample, answer: str | None) -> float:
    """0.5 when `answer` has the type the task asks for (parsable SMILES, integer, formula, yes/no)."""
    if not isinstance(answer, str) or not answer.strip():
        return 0.0
    answer = answer.strip()
    if example.answer_type == "smiles":
        ok = parse_smiles(answer) is not None
    elif example.answer_type == "int":
        ok = _parse_int(answer) is not None
    elif example.answer_type == "formula":
        ok = _FORMULA_RE.fullmatch(answer) is not None
    elif example.answer_type == "yesno":
        ok = _yes_no(answer) in ("yes", "no")
    else:
        ok = True  # free-text ChemCoT answers: any non-empty text has the right type
    return 0.5 if ok else 0.0


def correctness_reward(example: ChemExample, answer: str | None) -> float:
    return 1.0 if check_answer(example, answer) else 0.0


# ----------------------------------------------------------------------------------------------------------
# Text forms for the three training regimes


def format_prompt(example: ChemExample) -> str:
    return example.question + "\n"


def format_cot(example: ChemExample) -> str:
    return "".join(step + "\n" for step in example.steps)


def format_answer(answer: str) -> str:
    return "<answer>" + answer + "</answer>"


# ----------------------------------------------------------------------------------------------------------
# ChemCoTBench / ChemCoTDataset reader

_QUESTION_KEYS = ("query", "question", "prompt")
_TASK_KEYS = ("subtask", "task")
_ANSWER_KEYS = ("answer", "gt", "reference", "label")
_STEP_KEYS = ("steps", "struct_cot", "cot")

# ChemCoT subtasks with the same meaning as one of our kinds (ring_count/fg_count differ: they count a named
# ring/fragment, so they keep their own names and are checked against the reference).
_CHEMCOT_KIND = {
    "add": "add_group",
    "delete": "remove_group",
    "sub": "substitute_group",
    "logp": "increase_logp",
    "qed": "increase_qed",
}
_CHEMCOT_TYPE = {
    "fg_count": "int",
    "ring_count": "int",
    "equivalence": "yesno",
    "Murcko_scaffold": "smiles",
    "ring_system_scaffold": "smiles",
    "mol_edit": "smiles",
    "mol_opt": "smiles",
    "rxn": "smiles",
}
_SOURCE_IN_QUERY = re.compile(r"(?:Input|Source) Molecule:\s*([^\s,]+)")


def _json_value(value: Any, where: str, name: str) -> Any:
    """ChemCoT stores meta / struct_cot as JSON *strings* (sometimes twice encoded, or in a ```json fence)."""
    for _ in range(3):
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("```"):
            text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
        if not text or text[0] not in "{[\"":
            return value  # plain text, e.g. "Step 1: ...\nStep 2: ..."
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: field {name!r} is not valid JSON: {err.msg}") from None
    return value


def _steps_from(value: Any) -> tuple[list[str], str | None]:
    """(steps, final output if the CoT carries one) from a ChemCoT struct_cot / cot / steps field."""
    if value is None:
        return [], None
    if isinstance(value, dict):  # struct_cot: ordered {step name: content, ..., "output": answer}
        steps = [f"{k}: {v}" for k, v in value.items() if k != "output"]
        output = value.get("output")
        return steps, None if output is None else str(output)
    if isinstance(value, list):
        return [str(v) for v in value], None
    lines = [line.strip() for line in str(value).splitlines() if line.strip()]
    return lines, None


def _first_key(row: dict[str, Any], keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in row), None)


def _missing(where: str, name: str, row: dict[str, Any]) -> KeyError:
    return KeyError(f"{where}: missing required field {name}; available keys: {sorted(row)}")


def _row_to_example(row: Any, where: str) -> ChemExample:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object per row, got {type(row).__name__}")
    question_key = _first_key(row, _QUESTION_KEYS)
    if question_key is None:
        raise _missing(where, "'query' (or 'question'/'prompt')", row)
    task_key = _first_key(row, _TASK_KEYS)
    if task_key is None:
        raise _missing(where, "'task' (or 'subtask')", row)
    meta = _json_value(row.get("meta", {}), where, "meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    step_key = _first_key(row, _STEP_KEYS)
    steps, cot_output = _steps_from(_json_value(row[step_key], where, step_key) if step_key else None)

    # answer priority follows LatentChem's loader: explicit answer/gt, then meta gt/reference, then CoT output
    candidates = [row.get(k) for k in _ANSWER_KEYS] + [meta.get("gt"), meta.get("reference"), cot_output]
    if all(c is None for c in candidates):
        raise _missing(where, "'answer' (or 'gt'/'reference', meta gt/reference, struct_cot output)", row)
    answer = next((str(c).strip() for c in candidates if c is not None and str(c).strip()), "")

    task = str(row[task_key])
    kind = _CHEMCOT_KIND.get(task, task)
    question = str(row[question_key])
    source = row.get("source") or row.get("molecule") or meta.get("molecule")
    if not source:
        match = _SOURCE_IN_QUERY.search(question)
        source = match.group(1).rstrip(".") if match else ""
    if isinstance(source, list):
        source = ".".join(str(s) for s in source)
    answer_type = (
        row.get("answer_type")
        or TASK_ANSWER_TYPE.get(kind)
        or _CHEMCOT_TYPE.get(task)
        or _CHEMCOT_TYPE.get(str(row.get("task", "")))
        or _infer_type(answer)
    )
    extra = dict(meta)
    extra.update({f"chemcot_{k}": row[k] for k in ("id", "task", "subtask") if k in row})
    return ChemExample(kind, question, answer, str(answer_type), steps, str(source), extra)


def _infer_type(answer: str) -> str:
    if _parse_int(answer) is not None:
        return "int"
    if answer.lower() in ("yes", "no"):
        return "yesno"
    if parse_smiles(answer) is not None:
        return "smiles"
    return "formula" if _FORMULA_RE.fullmatch(answer) else "text"


def read_chemcot(path: str | Path, limit: int | None = None) -> list[ChemExample]:
    """Load ChemCoTBench / ChemCoTDataset rows (a .json array or .jsonl, one object per line).

    Real rows look like {"id", "query", "task": "mol_edit", "subtask": "add", "gt", "meta": "<JSON string>",
    "struct_cot": "<JSON string>", "raw_cot"}: the benchmark leaves "gt" empty for edit/optimisation rows and
    puts the source molecule and groups in meta ("molecule", "reference", "added_group", "removed_group");
    the training set's struct_cot is an ordered {step: content, ..., "output": answer} object. A minimal
    schema {task, question, answer, steps?, source?, answer_type?} is accepted too. Edit / optimisation
    subtasks (add, delete, sub, logp, qed) are renamed to our kinds so `check_answer` grades them
    chemically; other subtasks keep their names and are checked against the reference answer (so the
    target-oracle subtasks drd/gsk/jnk/solubility, which ship no reference, can never be graded correct).
    `raw_cot` (long free text) is ignored. Answers of no recognisable type get answer_type "text" (compared
    case-insensitively); generated examples only use int / formula / yesno / smiles.

    Raises FileNotFoundError (missing file), ValueError naming file:line (malformed JSON) and KeyError naming
    the field, the row and the available keys (missing required field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ChemCoT file not found: {path}")
    text = path.read_text(encoding="utf-8")
    rows: list[tuple[str, Any]] = []
    if path.suffix in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(text.splitlines(), start=1):
            if limit is not None and len(rows) >= limit:
                break  # do not parse (or fail on) rows that were not asked for
            if line.strip():
                try:
                    rows.append((f"{path}:{lineno}", json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: malformed JSON: {err.msg}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: malformed JSON: {err.msg}") from None
        if isinstance(data, dict):
            data = data["data"] if isinstance(data.get("data"), list) else [data]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of rows, got {type(data).__name__}")
        rows = [(f"{path}: row {i}", row) for i, row in enumerate(data)]
    examples = []
    for where, row in rows[:limit] if limit is not None else rows:
        examples.append(_row_to_example(row, where))
    return examples
