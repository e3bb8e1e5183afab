"""Tests for the toy LatentChem chemistry tasks: labels against independent RDKit calls and hand counts,
checkers that accept right answers and reject wrong ones, rewards by hand, and the ChemCoT reader."""

from __future__ import annotations

import json
import random

import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, Descriptors, rdFingerprintGenerator, rdMolDescriptors

from jaxsuite.latent.chem_molecules import (
    FUNCTIONAL_GROUPS,
    SIMILARITY_THRESHOLD,
    MoleculeGenerator,
    count_group,
)
from jaxsuite.latent.chem_tasks import (
    KNOWN_TASKS,
    ChemExample,
    TaskGenerator,
    check_answer,
    correctness_reward,
    extract_answer,
    format_answer,
    format_cot,
    format_prompt,
    format_reward,
    read_chemcot,
    type_reward,
)

N_PER_KIND = 25


@pytest.fixture(scope="module")
def examples() -> dict[str, list[ChemExample]]:
    return {kind: TaskGenerator(kinds=[kind], seed=0).batch(N_PER_KIND, seed=7) for kind in KNOWN_TASKS}


def mol(smiles: str) -> Chem.Mol:
    m = Chem.MolFromSmiles(smiles)
    assert m is not None, smiles
    return m


def hill_formula(m: Chem.Mol) -> str:
    """Independent molecular formula: explicit-H molecule, element counts, Hill order."""
    counts: dict[str, int] = {}
    for atom in Chem.AddHs(m).GetAtoms():
        counts[atom.GetSymbol()] = counts.get(atom.GetSymbol(), 0) + 1
    order = (["C", "H"] + sorted(set(counts) - {"C", "H"})) if "C" in counts else sorted(counts)
    return "".join(s + (str(counts[s]) if counts[s] > 1 else "") for s in order if s in counts)


def tanimoto(a: Chem.Mol, b: Chem.Mol) -> float:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return DataStructs.TanimotoSimilarity(gen.GetFingerprint(a), gen.GetFingerprint(b))


# ---------------------------------------------------------------- functional groups on hand-counted molecules

HAND_COUNTS = [
    ("OC(=O)c1ccccc1", {"carboxyl": 1, "hydroxyl": 0, "ketone": 0, "ether": 0}),  # benzoic acid
    ("CCO", {"hydroxyl": 1, "methyl": 1, "ether": 0}),  # ethanol
    ("c1ccncc1", {"amine": 0, "methyl": 0}),  # pyridine
    ("Oc1ccccc1O", {"hydroxyl": 2}),  # catechol
    ("CC(=O)c1ccccc1", {"ketone": 1, "methyl": 1, "carboxyl": 0}),  # acetophenone
    ("O=C1CCCCC1", {"ketone": 1}),  # cyclohexanone
    ("COc1ccccc1", {"ether": 1, "methyl": 1, "hydroxyl": 0}),  # anisole
    ("c1ccoc1", {"ether": 0}),  # furan: aromatic O is not an ether
    ("CCOC(C)=O", {"ether": 0, "ketone": 0, "methyl": 2}),  # ethyl acetate: ester is neither
    ("O=[N+]([O-])c1ccccc1", {"nitro": 1, "hydroxyl": 0}),  # nitrobenzene
    ("Nc1ccccc1", {"amine": 1}),  # aniline
    ("CC(N)=O", {"amine": 0}),  # acetamide: amide N is not an amine
    ("NCC(=O)O", {"amine": 1, "carboxyl": 1, "hydroxyl": 0}),  # glycine
    ("CC#N", {"nitrile": 1, "methyl": 1}),  # acetonitrile
    ("CC(C)C", {"methyl": 3}),  # isobutane
    ("ClCCCl", {"chloro": 2}),
    ("FC(F)(F)c1ccccc1", {"fluoro": 3, "methyl": 0}),
]


@pytest.mark.parametrize("smiles,expected", HAND_COUNTS)
def test_functional_group_counts_by_hand(smiles: str, expected: dict[str, int]) -> None:
    for name, n in expected.items():
        assert count_group(mol(smiles), name) == n, (smiles, name)


def test_functional_group_table_shape() -> None:
    assert len(FUNCTIONAL_GROUPS) >= 8
    for name, (smarts, fragment) in FUNCTIONAL_GROUPS.items():
        assert Chem.MolFromSmarts(smarts) is not None, name
        # phenyl + fragment (written by hand as a SMILES string) carries exactly one occurrence of the group
        assert count_group(mol(f"c1ccccc1{fragment}"), name) == 1, name
        assert count_group(mol("c1ccccc1"), name) == 0, name


# ---------------------------------------------------------------- understanding tasks: hand values

def _understanding(kind: str, smiles: str) -> ChemExample:
    """Run one understanding builder on a chosen molecule via a generator restricted to that scaffold."""
    gen = TaskGenerator(kinds=[kind], seed=0)
    gen.molecules = MoleculeGenerator(0, max_substituents=0, scaffolds=[smiles])
    return gen.sample(random.Random(0))


@pytest.mark.parametrize(
    "smiles,rings,aromatic,hbd,hba,formula",
    [
        ("OC(=O)c1ccccc1", 1, 6, 1, 1, "C7H6O2"),  # benzoic acid (RDKit: acid OH is not an acceptor)
        ("CCO", 0, 0, 1, 1, "C2H6O"),  # ethanol
        ("c1ccncc1", 1, 6, 0, 1, "C5H5N"),  # pyridine
        ("c1ccc2ccccc2c1", 2, 10, 0, 0, "C10H8"),  # naphthalene
    ],
)
def test_understanding_hand_values(smiles, rings, aromatic, hbd, hba, formula) -> None:
    expected = {"rings": rings, "aromatic_atoms": aromatic, "hbd": hbd, "hba": hba, "formula": formula}
    for kind, value in expected.items():
        example = _understanding(kind, smiles)
        assert example.source == Chem.MolToSmiles(mol(smiles))
        assert example.answer == str(value), kind
        assert check_answer(example, str(value))
        assert example.steps[-1].endswith(str(value))


# ---------------------------------------------------------------- every kind against RDKit in the test

def test_rings_against_rdkit(examples) -> None:
    for e in examples["rings"]:
        assert int(e.answer) == len(Chem.GetSymmSSSR(mol(e.source)))


def test_aromatic_atoms_against_rdkit(examples) -> None:
    for e in examples["aromatic_atoms"]:
        assert int(e.answer) == sum(a.GetIsAromatic() for a in mol(e.source).GetAtoms())


def test_hbd_hba_against_rdkit(examples) -> None:
    for e in examples["hbd"]:
        assert int(e.answer) == rdMolDescriptors.CalcNumHBD(mol(e.source))
    for e in examples["hba"]:
        assert int(e.answer) == rdMolDescriptors.CalcNumHBA(mol(e.source))


def test_formula_against_independent_hill_formula(examples) -> None:
    for e in examples["formula"]:
        assert e.answer == hill_formula(mol(e.source))


def test_has_group_against_substructure_search(examples) -> None:
    answers = set()
    for e in examples["has_group"]:
        group = e.meta["group"]
        assert group in e.question
        present = mol(e.source).HasSubstructMatch(Chem.MolFromSmarts(FUNCTIONAL_GROUPS[group][0]))
        assert e.answer == ("yes" if present else "no")
        answers.add(e.answer)
    assert answers == {"yes", "no"}


def test_add_group_reference(examples) -> None:
    for e in examples["add_group"]:
        group = e.meta["added_group"]
        src, ans = mol(e.source), mol(e.answer)
        assert group in e.question and e.source in e.question
        assert ans.HasSubstructMatch(src)  # the source survives intact inside the answer
        fragment_atoms = mol(FUNCTIONAL_GROUPS[group][1]).GetNumHeavyAtoms()
        assert ans.GetNumHeavyAtoms() == src.GetNumHeavyAtoms() + fragment_atoms
        pattern = Chem.MolFromSmarts(FUNCTIONAL_GROUPS[group][0])
        assert len({m[0] for m in ans.GetSubstructMatches(pattern)}) == len(
            {m[0] for m in src.GetSubstructMatches(pattern)}
        ) + 1
        assert check_answer(e, e.answer)


def test_remove_group_reference(examples) -> None:
    for e in examples["remove_group"]:
        group = e.meta["removed_group"]
        src, ans = mol(e.source), mol(e.answer)
        assert src.HasSubstructMatch(ans)  # what is left is part of the source
        assert ans.GetNumHeavyAtoms() < src.GetNumHeavyAtoms()
        pattern = Chem.MolFromSmarts(FUNCTIONAL_GROUPS[group][0])
        assert len({m[0] for m in ans.GetSubstructMatches(pattern)}) == len(
            {m[0] for m in src.GetSubstructMatches(pattern)}
        ) - 1
        assert check_answer(e, e.answer)
        assert not check_answer(e, e.source)


def test_substitute_group_reference(examples) -> None:
    for e in examples["substitute_group"]:
        removed, added = e.meta["removed_group"], e.meta["added_group"]
        assert removed != added and removed in e.question and added in e.question
        src, ans = mol(e.source), mol(e.answer)
        for group, delta in ((removed, -1), (added, +1)):
            pattern = Chem.MolFromSmarts(FUNCTIONAL_GROUPS[group][0])
            n_src = len({m[0] for m in src.GetSubstructMatches(pattern)})
            assert len({m[0] for m in ans.GetSubstructMatches(pattern)}) == n_src + delta
        assert check_answer(e, e.answer)
        assert not check_answer(e, e.source)


@pytest.mark.parametrize("kind,score", [("increase_logp", Descriptors.MolLogP), ("increase_qed", QED.qed)])
def test_optimisation_reference(examples, kind, score) -> None:
    for e in examples[kind]:
        src, ans = mol(e.source), mol(e.answer)
        assert score(ans) > score(src)
        assert tanimoto(src, ans) >= SIMILARITY_THRESHOLD
        assert check_answer(e, e.answer)
        assert not check_answer(e, e.source)


def test_all_kinds_shapes_and_lengths(examples) -> None:
    for kind, batch in examples.items():
        for e in batch:
            assert e.task == kind
            assert e.answer_type in ("int", "formula", "yesno", "smiles")
            assert 2 <= len(e.steps) <= 6
            assert len(e.question) <= 64
            assert all(0 < len(s) <= 48 for s in e.steps)
            assert e.answer in e.steps[-1]  # the rationale ends at the answer
            assert check_answer(e, e.answer)


# ---------------------------------------------------------------- determinism and the molecule generator

def test_generator_determinism() -> None:
    a = TaskGenerator(seed=3).batch(30, seed=11)
    b = TaskGenerator(seed=3).batch(30, seed=11)
    c = TaskGenerator(seed=3).batch(30, seed=12)
    assert a == b
    assert a != c
    g1, g2 = MoleculeGenerator(5), MoleculeGenerator(5)
    assert [g1.sample() for _ in range(20)] == [g2.sample() for _ in range(20)]
    r1, r2 = random.Random(9), random.Random(9)
    assert [g1.sample(r1) for _ in range(20)] == [MoleculeGenerator(0).sample(r2) for _ in range(20)]


def test_molecules_are_small_canonical_and_kekule_independent() -> None:
    gen, rng = MoleculeGenerator(0, max_heavy_atoms=12), random.Random(0)
    smiles = [gen.sample(rng) for _ in range(200)]
    assert len(set(smiles)) > 60
    assert any("c" in s for s in smiles) and any("n" in s for s in smiles)
    for s in smiles:
        m = mol(s)
        assert m.GetNumHeavyAtoms() <= 12 and len(s) <= 25
        assert Chem.MolToSmiles(m) == s  # canonical
        Chem.Kekulize(m, clearAromaticFlags=True)
        assert Chem.MolToSmiles(mol(Chem.MolToSmiles(m, kekuleSmiles=True))) == s


def test_unknown_kind_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="increase_qed"):
        TaskGenerator(kinds=["rings", "retrosynthesis"])
    with pytest.raises(ValueError, match="rings"):
        TaskGenerator(kinds=["nope"])


# ---------------------------------------------------------------- checkers on bad input

@pytest.mark.parametrize("bad", ["C1CC", "xyz", "", "   ", None, 3])
def test_invalid_answers_score_false_and_never_raise(examples, bad) -> None:
    for batch in examples.values():
        for e in batch[:5]:
            assert check_answer(e, bad) is False
            assert correctness_reward(e, bad) == 0.0


def test_checker_survives_broken_examples() -> None:
    broken = ChemExample("add_group", "Add x to ?", "", "smiles", [], "not a smiles", {"added_group": "chloro"})
    assert check_answer(broken, "CCCl") is False
    weird = ChemExample("increase_logp", "q", "", "smiles", [], "CCO", {})
    assert check_answer(weird, "C1CC") is False


# ---------------------------------------------------------------- edit and optimisation checkers by hand

def _edit(task: str, source: str, **meta: str) -> ChemExample:
    return ChemExample(task, "q", "", "smiles", [], source, dict(meta))


def test_add_checker_by_hand() -> None:
    e = _edit("add_group", "Cc1ccccc1", added_group="chloro")
    assert check_answer(e, "Cc1ccc(Cl)cc1")
    assert check_answer(e, "Cc1ccccc1Cl")  # any position is a valid addition
    assert check_answer(e, "ClCc1ccccc1")  # on the methyl carbon too
    assert not check_answer(e, "Cc1ccccc1")  # unedited source
    assert not check_answer(e, "Cc1ccc(F)cc1")  # wrong group
    assert not check_answer(e, "Clc1ccccc1")  # +1 chloro but the methyl was lost
    assert not check_answer(e, "CCc1ccc(Cl)cc1")  # +1 chloro but an extra carbon
    assert not check_answer(e, "Cc1ccc(Cl)cc1Cl")  # two added
    assert not check_answer(e, "Cc1ccccc1.Cl")  # a mixture is not an edited molecule


def test_remove_checker_by_hand() -> None:
    e = _edit("remove_group", "Oc1ccc(Cl)cc1", removed_group="hydroxyl")
    assert check_answer(e, "Clc1ccccc1")
    assert not check_answer(e, "Oc1ccc(Cl)cc1")  # unedited
    assert not check_answer(e, "Oc1ccccc1")  # removed the chlorine instead
    assert not check_answer(e, "Cc1ccc(Cl)cc1")  # swapped OH for CH3: count -1 but not a removal
    ketone = _edit("remove_group", "CC(=O)c1ccccc1", removed_group="ketone")
    assert check_answer(ketone, "c1ccccc1")  # acetyl stripped
    assert check_answer(ketone, "CCc1ccccc1")  # C=O reduced to CH2
    assert not check_answer(ketone, "CC(O)c1ccccc1")


def test_substitute_checker_by_hand() -> None:
    e = _edit("substitute_group", "Oc1ccc(Cl)cc1", removed_group="hydroxyl", added_group="amine")
    assert check_answer(e, "Nc1ccc(Cl)cc1")
    assert not check_answer(e, "Oc1ccc(Cl)cc1")  # unedited
    assert not check_answer(e, "Nc1ccc(O)cc1")  # replaced the chlorine, not the hydroxyl
    assert not check_answer(e, "Fc1ccc(Cl)cc1")  # wrong added group
    assert not check_answer(e, "Nc1ccc(Cl)cc1C")  # swapped but also added a methyl


def test_optimisation_checker_by_hand() -> None:
    phenol = "Oc1ccccc1"
    e = ChemExample("increase_logp", "Increase logP of Oc1ccccc1", "Oc1ccc(Cl)cc1", "smiles", [], phenol, {})
    logp = lambda s: Descriptors.MolLogP(mol(s))  # noqa: E731
    assert logp("Oc1ccc(Cl)cc1") > logp(phenol) and tanimoto(mol(phenol), mol("Oc1ccc(Cl)cc1")) >= 0.4
    assert check_answer(e, "Oc1ccc(Cl)cc1")
    assert logp("Oc1ccc(O)cc1") < logp(phenol)
    assert not check_answer(e, "Oc1ccc(O)cc1")  # worse
    assert logp("CCCCCCCCCC") > logp(phenol) and tanimoto(mol(phenol), mol("CCCCCCCCCC")) < 0.4
    assert not check_answer(e, "CCCCCCCCCC")  # better logP but unrelated
    assert not check_answer(e, phenol)  # not strictly higher
    q = ChemExample("increase_qed", "q", "", "smiles", [], phenol, {})
    assert QED.qed(mol("Oc1ccc(O)cc1")) != QED.qed(mol(phenol))
    assert check_answer(q, "Oc1ccc(O)cc1") == (
        QED.qed(mol("Oc1ccc(O)cc1")) > QED.qed(mol(phenol)) and tanimoto(mol(phenol), mol("Oc1ccc(O)cc1")) >= 0.4
    )


def test_scalar_checkers_normalise() -> None:
    n = ChemExample("rings", "q", "2", "int", [], "c1ccc2ccccc2c1")
    assert check_answer(n, " 2 ") and not check_answer(n, "3") and not check_answer(n, "two")
    f = ChemExample("formula", "q", "C7H6O2", "formula", [], "OC(=O)c1ccccc1")
    assert check_answer(f, "C7H6O2") and check_answer(f, " C7 H6 O2") and not check_answer(f, "c7h6o2")
    y = ChemExample("has_group", "q", "yes", "yesno", [], "CCO")
    assert check_answer(y, "Yes") and check_answer(y, "yes.") and not check_answer(y, "no")


# ---------------------------------------------------------------- rewards and text forms

def test_rewards_by_hand() -> None:
    assert extract_answer("think <answer>1</answer> more <answer> 2 </answer>") == "2"
    assert extract_answer("<ANSWER>CCO</ANSWER>") == "CCO"
    assert extract_answer("no tags") is None and extract_answer(None) is None
    assert format_reward("<answer>3</answer>") == 1.0
    assert format_reward("steps\n<answer>  </answer>") == 0.0
    assert format_reward("<answer>3") == 0.0 and format_reward("") == 0.0

    n = ChemExample("rings", "q", "1", "int", [], "c1ccccc1")
    s = ChemExample("add_group", "q", "Cc1ccccc1", "smiles", [], "c1ccccc1", {"added_group": "methyl"})
    f = ChemExample("formula", "q", "C2H6O", "formula", [], "CCO")
    y = ChemExample("has_group", "q", "no", "yesno", [], "CCO")
    assert type_reward(n, "3") == 0.5 and type_reward(n, "three") == 0.0 and type_reward(n, None) == 0.0
    assert type_reward(s, "CCO") == 0.5 and type_reward(s, "C1CC") == 0.0 and type_reward(s, "") == 0.0
    assert type_reward(f, "C2H6O") == 0.5 and type_reward(f, "c2h6o") == 0.0
    assert type_reward(y, "Yes") == 0.5 and type_reward(y, "maybe") == 0.0
    assert correctness_reward(n, "1") == 1.0 and correctness_reward(n, "2") == 0.0
    assert correctness_reward(s, "Cc1ccccc1") == 1.0 and correctness_reward(s, "CCO") == 0.0
    assert correctness_reward(y, extract_answer("<answer>no</answer>")) == 1.0


def test_text_forms() -> None:
    e = ChemExample("rings", "How many rings in CCO?", "0", "int", ["no ring closure digits", "rings = 0"], "CCO")
    assert format_prompt(e) == "How many rings in CCO?\n"
    assert format_cot(e) == "no ring closure digits\nrings = 0\n"
    assert format_answer(e.answer) == "<answer>0</answer>"
    assert extract_answer(format_prompt(e) + format_cot(e) + format_answer(e.answer)) == "0"


# ---------------------------------------------------------------- ChemCoT reader

BENCH_ROWS = [
    {
        "id": "a1",
        "query": "Help me count rings.\nInput Molecule: c1ccc2ccccc2c1, Ring Structure: c1ccccc1.",
        "gt": 2,
        "task": "mol_und",
        "subtask": "ring_count",
        "meta": "{}",
    },
    {
        "id": "a2",
        "query": "Add a group.\n\nInput Molecule: Cc1ccccc1, Functional Group to add: hydroxyl.",
        "gt": "",
        "task": "mol_edit",
        "subtask": "add",
        "meta": json.dumps({"reference": "Cc1ccc(O)cc1", "added_group": "hydroxyl"}),
    },
    {
        "id": "a3",
        "query": "Improve LogP.\n\nSource Molecule: Oc1ccccc1.",
        "gt": "",
        "task": "mol_opt",
        "subtask": "logp",
        "meta": json.dumps({"src_iupac": "phenol", "type": "small"}),
    },
    {
        "id": "a4",
        "query": "Add a group.\nInput Molecule: Cc1ccccc1, Functional Group to add: aldehyde.",
        "gt": "",
        "task": "mol_edit",
        "subtask": "add",
        "meta": json.dumps({"reference": "Cc1ccccc1C=O", "added_group": "aldehyde"}),
    },
]


def test_read_chemcot_benchmark_json(tmp_path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(BENCH_ROWS, indent=2))
    rings, add, opt, aldehyde = read_chemcot(path)
    assert (rings.task, rings.answer, rings.answer_type) == ("ring_count", "2", "int")
    assert rings.source == "c1ccc2ccccc2c1"  # parsed out of the query
    assert check_answer(rings, "2") and not check_answer(rings, "1")
    assert (add.task, add.answer, add.answer_type) == ("add_group", "Cc1ccc(O)cc1", "smiles")
    assert add.source == "Cc1ccccc1"
    assert add.meta["added_group"] == "hydroxyl" and add.meta["chemcot_id"] == "a2"
    assert check_answer(add, "Cc1ccccc1O")  # graded chemically, not against the one reference
    assert not check_answer(add, "Cc1ccccc1")
    assert (opt.task, opt.answer, opt.source) == ("increase_logp", "", "Oc1ccccc1")
    assert check_answer(opt, "Oc1ccc(Cl)cc1") and not check_answer(opt, "Oc1ccc(O)cc1")
    # a group outside our table falls back to the benchmark's reference molecule
    assert check_answer(aldehyde, "O=Cc1ccccc1C") and not check_answer(aldehyde, "Cc1ccc(C=O)cc1")
    assert len(read_chemcot(path, limit=2)) == 2


def test_read_chemcot_training_jsonl_and_minimal_schema(tmp_path) -> None:
    struct_cot = {"Step 1 parse": "benzene ring", "Step 2 count": "1 ring", "output": "1"}
    rows = [
        {"id": "t1", "query": "Count rings in c1ccccc1", "task": "mol_und", "subtask": "ring_count",
         "meta": json.dumps({"molecule": "c1ccccc1"}), "struct_cot": json.dumps(json.dumps(struct_cot))},
        {"id": "t2", "query": "Q?", "task": "mol_und", "subtask": "equivalence", "meta": {"gt": "Yes"},
         "struct_cot": "```json\n" + json.dumps({"compare": "same graph", "output": "Yes"}) + "\n```"},
        {"task": "formula", "question": "Formula of CCO?", "answer": "C2H6O", "steps": ["C: 2", "formula: C2H6O"]},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ring, same, formula = read_chemcot(path)
    assert ring.answer == "1" and ring.steps == ["Step 1 parse: benzene ring", "Step 2 count: 1 ring"]
    assert ring.source == "c1ccccc1" and ring.answer_type == "int"
    assert same.answer == "Yes" and same.answer_type == "yesno" and same.steps == ["compare: same graph"]
    assert check_answer(same, "yes")
    assert (formula.task, formula.answer, formula.answer_type) == ("formula", "C2H6O", "formula")
    assert formula.steps == ["C: 2", "formula: C2H6O"] and check_answer(formula, "C2H6O")


def test_read_chemcot_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_chemcot(tmp_path / "missing.json")

    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"query": "q",\n   "task": }\n]')
    with pytest.raises(ValueError, match=r"broken\.json:3"):
        read_chemcot(broken)

    broken_lines = tmp_path / "broken.jsonl"
    broken_lines.write_text('{"query": "q", "task": "t", "answer": "1"}\n{"query": oops}\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:2"):
        read_chemcot(broken_lines)

    no_query = tmp_path / "no_query.json"
    no_query.write_text(json.dumps([{"task": "t", "answer": "1"}]))
    with pytest.raises(KeyError, match=r"row 0.*query.*\['answer', 'task'\]"):
        read_chemcot(no_query)

    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text(json.dumps({"query": "q", "task": "t"}) + "\n")
    with pytest.raises(KeyError, match=r"no_answer\.jsonl:1.*answer"):
        read_chemcot(no_answer)

    bad_meta = tmp_path / "bad_meta.json"
    bad_meta.write_text(json.dumps([{"query": "q", "task": "t", "gt": "1", "meta": "{not json"}]))
    with pytest.raises(ValueError, match="meta"):
        read_chemcot(bad_meta)
