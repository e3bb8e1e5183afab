"""Small organic molecules, functional groups and single-group edits, all decided by RDKit.

The toy LatentChem reproduction trains a tiny byte-level language model on CPU, so every molecule it sees
must be short (a few ring atoms plus at most two substituents) and every label must come from RDKit rather
than from hand-written chemistry. This module is the chemistry half of that: it

* samples small, valid, canonical molecules from a fixed list of scaffolds decorated with functional groups
  (`MoleculeGenerator`), deterministically from a `random.Random`;
* defines the functional groups once (`FUNCTIONAL_GROUPS`: a counting SMARTS and a fragment to attach) so
  that the question generator, the reference edits and the answer checker all agree on what "one hydroxyl"
  means;
* performs the single-group edits (attach a group at a carbon C-H, strip one occurrence of a group and cap
  the carbon with hydrogen) that both the editing/optimisation tasks and the edit checker are built on.

Counting convention: every counting SMARTS starts with the group's *key atom* (the hydroxyl O, the nitro
N, the carbonyl C, ...) and a group is counted once per distinct key atom, so symmetric matches never
double count. Edits only ever touch carbon atoms, which keeps hydrogen bookkeeping simple (no [nH]).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from jaxsuite.core.extras import require

require("rdkit", extra="chem", for_="jaxsuite.latent (LatentChem)")
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import QED, Crippen, rdFingerprintGenerator

# name -> (counting SMARTS whose first atom is the key atom, SMILES fragment whose first atom bonds to the host C)
FUNCTIONAL_GROUPS: dict[str, tuple[str, str]] = {
    # O-H on a carbon that is not a carbonyl/imine carbon: phenols and alcohols, but not the acid OH.
    "hydroxyl": ("[OX2H1][#6;!$([#6]=[O,S,N])]", "O"),
    # primary amine (NH2 on carbon), excluding amides, thioamides and amidines.
    "amine": ("[NX3H2;+0][#6;!$([#6]=[O,S,N])]", "N"),
    "carboxyl": ("[CX3](=[OX1])[OX2H1]", "C(=O)O"),
    # sp3 CH3 with exactly one heavy neighbour (methoxy and acetyl methyls count too).
    "methyl": ("[CX4H3;D1]", "C"),
    "chloro": ("[#17]", "Cl"),
    "fluoro": ("[#9]", "F"),
    # RDKit sanitisation always stores nitro in the charge-separated form.
    "nitro": ("[NX3+](=[OX1])[OX1-]", "[N+](=O)[O-]"),
    # carbonyl carbon between two carbons (ring ketones included, aldehydes/acids/esters/amides excluded).
    "ketone": ("[CX3](=[OX1])([#6])[#6]", "C(C)=O"),
    # non-aromatic O between two carbons that is not an ester/acid oxygen (furan's O does not count).
    "ether": ("[OX2;!a;!$(O[#6]=[O,S,N])]([#6])[#6]", "OC"),
    "nitrile": ("[CX2]#[NX1]", "C#N"),
}

# How one occurrence of a group can be stripped: atoms carrying map number 1 are deleted and every carbon
# that loses a neighbour is capped with hydrogen. Groups with more than one pattern can be "undone" in more
# than one way (an acetyl ketone can lose C(=O)CH3; a ring ketone C=O becomes CH2).
REMOVAL_PATTERNS: dict[str, tuple[str, ...]] = {
    "hydroxyl": ("[#6;!$([#6]=[O,S,N])][OX2H1:1]",),
    "amine": ("[#6;!$([#6]=[O,S,N])][NX3H2;+0:1]",),
    "carboxyl": ("[#6][CX3:1](=[OX1:1])[OX2H1:1]",),
    "methyl": ("[#6][CX4H3;D1:1]",),
    "chloro": ("[#6][#17:1]",),
    "fluoro": ("[#6][#9:1]",),
    "nitro": ("[#6][NX3+:1](=[OX1:1])[OX1-:1]",),
    "ketone": ("[#6][CX3](=[OX1:1])[#6]", "[#6][CX3:1](=[OX1:1])[CX4H3:1]"),
    "ether": (
        "[#6][OX2;!a;!$(O[#6]=[O,S,N]):1][CX4H3:1]",
        "[#6][OX2;!a;!$(O[#6]=[O,S,N]):1][CX4H2:1][CX4H3:1]",
    ),
    "nitrile": ("[#6][CX2:1]#[NX1:1]",),
}

# Small scaffolds: aromatic and saturated rings (one fused pair for two-ring answers) and short chains.
SCAFFOLDS: tuple[str, ...] = (
    "c1ccccc1",  # benzene
    "c1ccncc1",  # pyridine
    "c1cncnc1",  # pyrimidine
    "c1ccoc1",  # furan
    "c1ccsc1",  # thiophene
    "c1cc[nH]c1",  # pyrrole
    "c1ccc2ccccc2c1",  # naphthalene
    "C1CCCCC1",  # cyclohexane
    "C1CCCC1",  # cyclopentane
    "C1=CCCCC1",  # cyclohexene
    "C1CCOC1",  # tetrahydrofuran
    "C1CCNCC1",  # piperidine
    "CC",  # ethane
    "CCC",  # propane
    "CCCC",  # butane
    "CC(C)C",  # isobutane
    "CCCCC",  # pentane
)

# Tanimoto similarity (Morgan radius 2, 2048 bits) an optimised molecule must keep to its source. It rules
# out "answer with any greasy molecule" for increase_logp. For molecules this small a single edit already
# costs a lot of similarity (benzene -> toluene is 0.27), so the task generator only emits optimisation
# examples whose reference edit stays above this threshold.
SIMILARITY_THRESHOLD = 0.4

_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


@lru_cache(maxsize=None)
def _pattern(smarts: str) -> Chem.Mol:
    pattern = Chem.MolFromSmarts(smarts)
    if pattern is None:  # a typo in the tables above should fail loudly, not count zero
        raise ValueError(f"invalid SMARTS {smarts!r}")
    return pattern


def parse_smiles(text: str | None) -> Chem.Mol | None:
    """RDKit molecule for `text`, or None for anything that is not a valid SMILES. Never raises, never logs."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        with rdBase.BlockLogs():  # model answers are often garbage; RDKit would print a parse error each time
            return Chem.MolFromSmiles(text.strip())
    except Exception:
        return None


def canonical(mol: Chem.Mol) -> str:
    """Canonical SMILES without stereo: generated molecules carry none, and answers are compared without it."""
    return Chem.MolToSmiles(mol, isomericSmiles=False)


def canonicalize(smiles: str) -> str | None:
    mol = parse_smiles(smiles)
    return None if mol is None else canonical(mol)


def count_group(mol: Chem.Mol, name: str) -> int:
    """Occurrences of functional group `name`: distinct key atoms among the counting-SMARTS matches."""
    smarts, _ = FUNCTIONAL_GROUPS[name]
    matches = mol.GetSubstructMatches(_pattern(smarts), uniquify=False, maxMatches=100000)
    return len({match[0] for match in matches})


def group_counts(mol: Chem.Mol) -> dict[str, int]:
    return {name: count_group(mol, name) for name in FUNCTIONAL_GROUPS}


def host_atoms(mol: Chem.Mol) -> list[int]:
    """Carbons with at least one hydrogen: where a group may be attached."""
    return [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 6 and a.GetTotalNumHs() > 0]


def describe_site(mol: Chem.Mol, atom_idx: int) -> str:
    """Short words for an attachment site, used in the step-by-step rationales."""
    atom = mol.GetAtomWithIdx(atom_idx)
    if atom.GetIsAromatic():
        return "aromatic C"
    return "ring C" if atom.IsInRing() else "chain C"


def _sanitized(rw: Chem.RWMol) -> Chem.Mol | None:
    mol = rw.GetMol()
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
    except Exception:
        return None
    return mol


def attach_group(mol: Chem.Mol, host_idx: int, name: str) -> Chem.Mol | None:
    """Attach group `name` to carbon `host_idx` (replacing one of its hydrogens); None if chemically invalid."""
    host = mol.GetAtomWithIdx(host_idx)
    if host.GetAtomicNum() != 6 or host.GetTotalNumHs() == 0:
        return None
    _, fragment = FUNCTIONAL_GROUPS[name]
    rw = Chem.RWMol(Chem.CombineMols(mol, Chem.MolFromSmiles(fragment)))
    rw.AddBond(host_idx, mol.GetNumAtoms(), Chem.BondType.SINGLE)
    new_host = rw.GetAtomWithIdx(host_idx)
    if new_host.GetNumExplicitHs() > 0:  # bracket atoms such as [CH2] keep their H count explicitly
        new_host.SetNumExplicitHs(new_host.GetNumExplicitHs() - 1)
    new_host.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    return _sanitized(rw)


@dataclass(frozen=True)
class Stripped:
    """One way of removing one occurrence of a group: the result, where it was, and what was deleted."""

    mol: Chem.Mol
    hosts: tuple[int, ...]  # atom indices (in `mol`) that lost the group and were capped with H
    deleted: str  # SMILES of the deleted atoms, for rationales
    site: str  # describe_site of the first host in the source molecule


def strip_group(mol: Chem.Mol, name: str) -> list[Stripped]:
    """Every way of deleting exactly one occurrence of group `name` from `mol` (capping carbons with H)."""
    results: list[Stripped] = []
    seen: set[frozenset[int]] = set()
    for smarts in REMOVAL_PATTERNS[name]:
        pattern = _pattern(smarts)
        marked = [i for i, a in enumerate(pattern.GetAtoms()) if a.GetAtomMapNum() == 1]
        for match in mol.GetSubstructMatches(pattern, uniquify=False, maxMatches=100000):
            doomed = frozenset(match[i] for i in marked)
            if doomed in seen:
                continue
            seen.add(doomed)
            stripped = _delete_atoms(mol, doomed)
            if stripped is not None:
                results.append(stripped)
    return results


def _delete_atoms(mol: Chem.Mol, doomed: frozenset[int]) -> Stripped | None:
    old_hosts = sorted(
        {nbr.GetIdx() for i in doomed for nbr in mol.GetAtomWithIdx(i).GetNeighbors()} - set(doomed)
    )
    rw = Chem.RWMol(mol)
    for idx in old_hosts:
        atom = rw.GetAtomWithIdx(idx)
        atom.SetNoImplicit(False)  # let RDKit fill the freed valence with implicit hydrogens
        atom.SetNumExplicitHs(0)
        atom.SetNumRadicalElectrons(0)
        atom.SetFormalCharge(0)
        atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    for idx in sorted(doomed, reverse=True):
        rw.RemoveAtom(idx)
    result = _sanitized(rw)
    if result is None or len(Chem.GetMolFrags(result)) != 1:
        return None
    new_hosts = tuple(idx - sum(1 for d in doomed if d < idx) for idx in old_hosts)
    deleted = Chem.MolFragmentToSmiles(mol, atomsToUse=sorted(doomed), isomericSmiles=False)
    return Stripped(result, new_hosts, deleted, describe_site(mol, old_hosts[0]) if old_hosts else "C")


def stripped_smiles(mol: Chem.Mol, name: str) -> set[str]:
    return {canonical(s.mol) for s in strip_group(mol, name)}


def heavy_atoms(mol: Chem.Mol) -> int:
    return mol.GetNumHeavyAtoms()


def logp(mol: Chem.Mol) -> float:
    return Crippen.MolLogP(mol)


def qed(mol: Chem.Mol) -> float:
    return QED.qed(mol)


PROPERTIES = {"logp": logp, "qed": qed}


def similarity(a: Chem.Mol, b: Chem.Mol) -> float:
    """Tanimoto similarity of Morgan (radius 2, 2048-bit) fingerprints."""
    return DataStructs.TanimotoSimilarity(_MORGAN.GetFingerprint(a), _MORGAN.GetFingerprint(b))


def single_group_edits(mol: Chem.Mol, groups: Iterable[str] = FUNCTIONAL_GROUPS) -> dict[str, str]:
    """All molecules one group addition or removal away from `mol`: canonical SMILES -> short description.

    The first description found for a product wins, so iteration order (groups, then atoms) decides ties
    deterministically.
    """
    source = canonical(mol)
    edits: dict[str, str] = {}
    for name in groups:
        for host in host_atoms(mol):
            product = attach_group(mol, host, name)
            if product is not None:
                edits.setdefault(canonical(product), f"add {name}")
        for stripped in strip_group(mol, name):
            edits.setdefault(canonical(stripped.mol), f"remove {name}")
    edits.pop(source, None)
    return edits


class MoleculeGenerator:
    """Deterministic sampler of small valid molecules: a scaffold plus 0-2 functional groups on carbon C-H.

    `sample(rng)` draws only from `rng` (a `random.Random`), so a task generator sharing one rng stays
    reproducible; without an rng the generator's own, seeded from `seed`, is used.
    """

    def __init__(
        self,
        seed: int = 0,
        max_heavy_atoms: int = 12,
        max_substituents: int = 2,
        max_smiles_len: int = 25,
        groups: Sequence[str] | None = None,
        scaffolds: Sequence[str] = SCAFFOLDS,
    ) -> None:
        self.max_heavy_atoms = max_heavy_atoms
        self.max_substituents = max_substituents
        self.max_smiles_len = max_smiles_len
        self.groups = tuple(groups) if groups is not None else tuple(FUNCTIONAL_GROUPS)
        unknown = [g for g in self.groups if g not in FUNCTIONAL_GROUPS]
        if unknown:
            raise ValueError(f"unknown functional groups {unknown}; known: {', '.join(FUNCTIONAL_GROUPS)}")
        self._scaffolds = [m for m in (Chem.MolFromSmiles(s) for s in scaffolds) if m is not None]
        small = [m for m in self._scaffolds if heavy_atoms(m) <= max_heavy_atoms]
        if not small:
            raise ValueError(f"no scaffold has at most {max_heavy_atoms} heavy atoms")
        self._scaffolds = small
        self._rng = random.Random(seed)

    def sample_mol(self, rng: random.Random | None = None) -> Chem.Mol:
        rng = rng if rng is not None else self._rng
        for _ in range(1000):
            mol = rng.choice(self._scaffolds)
            # weight towards decorated molecules: bare scaffolds make dull, repetitive questions
            n_groups = rng.choice([0] + [k for k in range(1, self.max_substituents + 1) for _ in range(2)])
            for _ in range(n_groups):
                hosts = host_atoms(mol)
                if not hosts:
                    break
                product = attach_group(mol, rng.choice(hosts), rng.choice(self.groups))
                if product is None:
                    break
                mol = product
            if heavy_atoms(mol) <= self.max_heavy_atoms and len(canonical(mol)) <= self.max_smiles_len:
                return Chem.MolFromSmiles(canonical(mol))  # re-parse so atom order follows the canonical SMILES
        raise RuntimeError("could not sample a molecule within the size limits; loosen max_heavy_atoms")

    def sample(self, rng: random.Random | None = None) -> str:
        """Canonical SMILES (aromatic atoms lowercase) of a freshly sampled molecule."""
        return canonical(self.sample_mol(rng))
