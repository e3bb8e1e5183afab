"""A generated fact base: made-up countries, a page per country, and questions only the pages answer.

Every name is drawn from syllables with a seed, so no model knows the facts beforehand and every answer is
checkable: a question about a country is answerable from its page alone (found by searching the country's
name), and held-out countries test whether a model learned to look facts up rather than memorised them.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from jaxsuite.agents.environment import Task
from jaxsuite.agents.retrieval import Document

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_ANIMALS = ["heron", "lynx", "otter", "falcon", "ibex", "badger", "marten", "crane", "viper", "bison"]
ATTRIBUTES = {
    "capital": ("What is the capital of {name}?", "The capital of {name} is {value}."),
    "founded": ("In which year was {name} founded?", "{name} was founded in {value}."),
    "animal": ("What is the national animal of {name}?", "The national animal of {name} is the {value}."),
}


def _word(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)).capitalize()


@dataclasses.dataclass(frozen=True)
class Country:
    name: str
    capital: str
    founded: str
    animal: str


def make_countries(count: int, seed: int) -> list[Country]:
    """`count` countries with distinct names and capitals."""
    rng = np.random.default_rng(seed)
    names: set[str] = set()
    countries = []
    while len(countries) < count:
        name, capital = _word(rng, 3), _word(rng, 2)
        if name in names or capital in names:
            continue
        names |= {name, capital}
        countries.append(Country(name, capital, str(int(rng.integers(1000, 2000))), str(rng.choice(_ANIMALS))))
    return countries


def page(country: Country) -> Document:
    facts = [template.format(name=country.name, value=getattr(country, attr))
             for attr, (_, template) in ATTRIBUTES.items()]
    return Document(id=f"page-{country.name.lower()}", title=country.name, contents=" ".join(facts))


def questions(countries: list[Country], *, split: str) -> list[Task]:
    return [Task(id=f"{split}-{c.name.lower()}-{attr}", question=q.format(name=c.name), answer=getattr(c, attr),
                 metadata={"country": c.name, "attribute": attr})
            for c in countries for attr, (q, _) in ATTRIBUTES.items()]


def split_countries(count: int, test_fraction: float, seed: int) -> tuple[list[Country], list[Country]]:
    """(train, test): every country has a page in the corpus; test countries never appear in training."""
    countries = make_countries(count, seed)
    n_test = max(1, int(round(count * test_fraction)))
    return countries[n_test:], countries[:n_test]


def teacher_turns(task: Task) -> tuple[str, str]:
    """What an expert writes for a lookup question: a search for the country, then the answer copied from
    the result. The two assistant turns as text (the chat format wraps them)."""
    call = json.dumps({"name": "search", "arguments": {"query": task.metadata["country"]}})
    return f"<tool_call>\n{call}\n</tool_call>", f"<answer>{task.answer}</answer>"
