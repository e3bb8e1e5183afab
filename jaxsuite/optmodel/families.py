"""Industrial-style optimisation problems with ground truth: statement in words, structured model, optimum.

    problem = generate("transportation", rng=np.random.default_rng(0), size="toy", phrasing=1)
    problem.statement      # the requirement in words, every number of the model in it
    problem.model          # LinearModel (jaxsuite.optmodel.model)
    problem.optimum        # solved here with HiGHS; tests check it against SCIP

Eight families, each with at least two phrasings (different order, voice and wording of the same facts), and
sizes from `toy` (a handful of variables, what a tiny model learns to write) to `medium` (thousands of
variables, for the variable-pruning experiments):

    production     products x resources, integer quantities, maximise profit
    transportation supplies -> demands, minimise shipping cost
    assignment     workers <-> tasks, binary, minimise cost
    knapsack       items, binary, maximise value under a weight limit (several limits at medium size)
    facility       open facilities (binary, fixed cost, capacity) and serve customers: capacitated location
    blending       ingredients with nutrient contents, meet requirements at least cost (diet)
    scheduling     one machine, jobs with release-free due dates, big-M disjunctions, weighted tardiness
    inventory      multi-period lot sizing: production, stock balance, setup binaries, holding cost

Instances are always feasible by construction (capacities drawn to cover demand), so the optimum exists.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from jaxsuite.optmodel.model import LinearModel, solve

SIZES = ("toy", "small", "medium")


@dataclasses.dataclass
class Problem:
    family: str
    size: str
    phrasing: int
    statement: str
    model: LinearModel
    optimum: float | None = None

    def solved(self) -> "Problem":
        solution = solve(self.model)
        if not solution.optimal:
            raise RuntimeError(f"{self.family} instance did not solve to optimality ({solution.status})")
        self.optimum = solution.objective
        return self


def _names(stem: str, words: list[str], n: int) -> list[str]:
    return words[:n] if n <= len(words) else [f"{stem}{i + 1}" for i in range(n)]


def _ident(word: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in word.lower())


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


PRODUCTS = ["chairs", "tables", "desks", "shelves", "cabinets", "benches", "stools", "beds"]
RESOURCES = ["wood", "labour hours", "machine hours", "paint", "glue", "storage"]
PLACES = ["Boston", "Denver", "Austin", "Seattle", "Miami", "Chicago", "Phoenix", "Atlanta", "Dallas", "Tampa"]
WORKERS = ["Alice", "Bob", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo"]
TASKS = ["welding", "painting", "packing", "testing", "sorting", "cutting", "drilling", "wiring"]
ITEMS = ["tent", "stove", "rope", "lamp", "radio", "map", "knife", "filter", "jacket", "boots"]
FOODS = ["oats", "rice", "beans", "milk", "eggs", "spinach", "chicken", "tofu"]
NUTRIENTS = ["protein", "fibre", "calcium", "iron", "vitamin C"]


def production(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    n, r = {"toy": (2, 2), "small": (4, 3), "medium": (60, 40)}[size]
    products, resources = _names("product", PRODUCTS, n), _names("resource", RESOURCES, r)
    profit = rng.integers(5, 40, n)
    use = rng.integers(1, 9, (r, n))
    capacity = (use.sum(1) * rng.integers(4, 12, r)).astype(int)
    m = LinearModel(f"production_{size}", "maximize")
    xs = [m.variable(f"make_{_ident(p)}", kind="integer") for p in products]
    for i, res in enumerate(resources):
        m.constrain(f"limit_{_ident(res)}", dict(zip(xs, use[i])), "<=", capacity[i])
    m.objective = dict(zip(xs, profit))
    facts = [f"Each unit of {p} earns a profit of ${profit[j]}" for j, p in enumerate(products)]
    usage = [f"one unit of {p} uses " + _list([f"{use[i, j]} {res}" for i, res in enumerate(resources)])
             for j, p in enumerate(products)]
    limits = _list([f"{capacity[i]} {res}" for i, res in enumerate(resources)])
    if phrasing == 0:
        text = (f"A workshop makes {_list(products)}. " + ". ".join(facts) + ". In production, "
                + "; ".join(usage) + f". Available this week: {limits}. Quantities must be whole units. "
                "How many of each should be made to maximise total profit? What is the maximum profit?")
    else:
        text = (f"This week's stock is {limits}. The factory can produce {_list(products)} in whole units, where "
                + "; ".join(usage) + ". " + ". ".join(f"{p} sells at a margin of ${profit[j]} per unit"
                                                      for j, p in enumerate(products))
                + ". Find the production plan with the largest total profit and report that profit.")
    return Problem("production", size, phrasing, text, m)


def transportation(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    s, d = {"toy": (2, 2), "small": (3, 4), "medium": (40, 50)}[size]
    sources, sinks = _names("depot", PLACES[:5], s), _names("store", PLACES[5:], d)
    demand = rng.integers(10, 60, d)
    supply = rng.multinomial(int(demand.sum() * 1.3), np.ones(s) / s) + 5
    cost = rng.integers(1, 20, (s, d))
    m = LinearModel(f"transportation_{size}", "minimize")
    x = {(i, j): m.variable(f"ship_{_ident(a)}_{_ident(b)}") for i, a in enumerate(sources)
         for j, b in enumerate(sinks)}
    for i, a in enumerate(sources):
        m.constrain(f"supply_{_ident(a)}", {x[i, j]: 1 for j in range(d)}, "<=", supply[i])
    for j, b in enumerate(sinks):
        m.constrain(f"demand_{_ident(b)}", {x[i, j]: 1 for i in range(s)}, ">=", demand[j])
    m.objective = {x[i, j]: cost[i, j] for i in range(s) for j in range(d)}
    costs = "; ".join(f"from {a} to {b} costs ${cost[i, j]} per unit" for i, a in enumerate(sources)
                      for j, b in enumerate(sinks))
    stock = _list([f"{a} has {supply[i]} units" for i, a in enumerate(sources)])
    need = _list([f"{b} needs at least {demand[j]} units" for j, b in enumerate(sinks)])
    if phrasing == 0:
        text = (f"A distributor ships goods from its warehouses to its stores. {stock}. {need}. Shipping {costs}. "
                "What is the minimum total shipping cost that meets every store's demand?")
    else:
        text = (f"Stores must be supplied: {need}. Warehouse stock: {stock}. The cost of shipping one unit {costs}. "
                "Amounts may be fractional. Plan the shipments at the least total cost and state that cost.")
    return Problem("transportation", size, phrasing, text, m)


def assignment(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    n = {"toy": 2, "small": 4, "medium": 45}[size]
    workers, tasks = _names("worker", WORKERS, n), _names("task", TASKS, n)
    cost = rng.integers(2, 30, (n, n))
    m = LinearModel(f"assignment_{size}", "minimize")
    x = {(i, j): m.variable(f"assign_{_ident(w)}_{_ident(t)}", kind="binary") for i, w in enumerate(workers)
         for j, t in enumerate(tasks)}
    for i, w in enumerate(workers):
        m.constrain(f"one_task_{_ident(w)}", {x[i, j]: 1 for j in range(n)}, "==", 1)
    for j, t in enumerate(tasks):
        m.constrain(f"one_worker_{_ident(t)}", {x[i, j]: 1 for i in range(n)}, "==", 1)
    m.objective = {x[i, j]: cost[i, j] for i in range(n) for j in range(n)}
    table = "; ".join(f"{w} takes " + _list([f"{cost[i, j]} hours for {t}" for j, t in enumerate(tasks)])
                      for i, w in enumerate(workers))
    if phrasing == 0:
        text = (f"Assign each of {_list(workers)} to exactly one of the tasks {_list(tasks)}, each task to exactly one "
                f"person. {table}. What is the minimum total time?")
    else:
        text = (f"{table}. Every task needs one person and every person does one task. "
                "Find the assignment with the least total hours and report the total.")
    return Problem("assignment", size, phrasing, text, m)


def knapsack(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    n, k = {"toy": (3, 1), "small": (6, 1), "medium": (400, 5)}[size]
    items = _names("item", ITEMS, n)
    value = rng.integers(5, 60, n)
    weight = rng.integers(1, 30, (k, n))
    capacity = (weight.sum(1) * 0.4).astype(int)
    m = LinearModel(f"knapsack_{size}", "maximize")
    xs = [m.variable(f"take_{_ident(it)}", kind="binary") for it in items]
    labels = ["weight"] if k == 1 else [f"resource {i + 1}" for i in range(k)]
    for i, label in enumerate(labels):
        m.constrain(f"capacity_{_ident(label)}", dict(zip(xs, weight[i])), "<=", capacity[i])
    m.objective = dict(zip(xs, value))
    facts = "; ".join(f"the {it} is worth {value[j]} points and uses "
                      + _list([f"{weight[i, j]} units of {label}" for i, label in enumerate(labels)])
                      for j, it in enumerate(items))
    limits = _list([f"{capacity[i]} units of {label}" for i, label in enumerate(labels)])
    if phrasing == 0:
        text = (f"A hiker chooses what to pack: {facts}. The pack holds at most {limits}. Each item is taken whole "
                "or left. What is the largest total value that fits?")
    else:
        text = (f"Limits: {limits}. Candidates, each taken or not: {facts}. Choose the items to maximise total "
                "value and give that value.")
    return Problem("knapsack", size, phrasing, text, m)


def facility(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    f, c = {"toy": (2, 2), "small": (3, 5), "medium": (30, 60)}[size]
    sites, customers = _names("site", PLACES[:5], f), _names("customer", PLACES[5:], c)
    demand = rng.integers(5, 40, c)
    capacity = rng.integers(int(demand.sum() / f) + 10, int(demand.sum() / f * 2) + 20, f)
    fixed = rng.integers(50, 300, f)
    cost = rng.integers(1, 15, (f, c))
    m = LinearModel(f"facility_{size}", "minimize")
    y = [m.variable(f"open_{_ident(s)}", kind="binary") for s in sites]
    x = {(i, j): m.variable(f"serve_{_ident(s)}_{_ident(t)}") for i, s in enumerate(sites)
         for j, t in enumerate(customers)}
    for j, t in enumerate(customers):
        m.constrain(f"demand_{_ident(t)}", {x[i, j]: 1 for i in range(f)}, ">=", demand[j])
    for i, s in enumerate(sites):
        m.constrain(f"capacity_{_ident(s)}", {**{x[i, j]: 1 for j in range(c)}, y[i]: -capacity[i]}, "<=", 0)
    m.objective = {**dict(zip(y, fixed)), **{x[i, j]: cost[i, j] for i in range(f) for j in range(c)}}
    sites_text = "; ".join(f"a depot at {s} costs ${fixed[i]} to open and can ship up to {capacity[i]} units"
                           for i, s in enumerate(sites))
    needs = _list([f"{t} needs {demand[j]} units" for j, t in enumerate(customers)])
    unit = "; ".join(f"{s} to {t} costs ${cost[i, j]} per unit" for i, s in enumerate(sites)
                     for j, t in enumerate(customers))
    if phrasing == 0:
        text = (f"A company decides which depots to open. {sites_text}. {needs}. Delivery from {unit}. "
                "Only open depots can ship. What is the minimum total of opening and delivery costs?")
    else:
        text = (f"Customers: {needs}. Candidate depots: {sites_text}. Per-unit delivery: {unit}. A closed depot "
                "ships nothing. Choose depots and deliveries at least total cost; report the cost.")
    return Problem("facility", size, phrasing, text, m)


def blending(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    n, k = {"toy": (2, 2), "small": (4, 3), "medium": (150, 40)}[size]
    foods, nutrients = _names("food", FOODS, n), _names("nutrient", NUTRIENTS, k)
    price = rng.integers(1, 10, n)
    content = rng.integers(0, 12, (k, n))
    content[:, rng.integers(0, n, k)] += 3     # every nutrient is in some food: the requirement can be met
    need = (content.sum(1) * rng.uniform(0.5, 1.5, k)).astype(int) + 1
    m = LinearModel(f"blending_{size}", "minimize")
    xs = [m.variable(f"servings_{_ident(fd)}") for fd in foods]
    for i, nu in enumerate(nutrients):
        m.constrain(f"need_{_ident(nu)}", dict(zip(xs, content[i])), ">=", need[i])
    m.objective = dict(zip(xs, price))
    per = "; ".join(f"a serving of {fd} costs ${price[j]} and has "
                    + _list([f"{content[i, j]} g of {nu}" for i, nu in enumerate(nutrients)])
                    for j, fd in enumerate(foods))
    reqs = _list([f"{need[i]} g of {nu}" for i, nu in enumerate(nutrients)])
    if phrasing == 0:
        text = (f"A dietitian plans a menu: {per}. The menu must provide at least {reqs}. Servings may be "
                "fractional. What is the cheapest menu's cost?")
    else:
        text = (f"Daily minimums: {reqs}. Foods available: {per}. Find the least-cost amounts (fractions allowed) "
                "and report the minimum cost.")
    return Problem("blending", size, phrasing, text, m)


def scheduling(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    n = {"toy": 2, "small": 4, "medium": 12}[size]
    jobs = [f"job {i + 1}" for i in range(n)]
    duration = rng.integers(2, 10, n)
    due = rng.integers(int(duration.min()), int(duration.sum()), n)
    weight = rng.integers(1, 5, n)
    big_m = int(duration.sum())
    m = LinearModel(f"scheduling_{size}", "minimize")
    start = [m.variable(f"start_{i + 1}") for i in range(n)]
    late = [m.variable(f"tardiness_{i + 1}") for i in range(n)]
    for i in range(n):
        m.constrain(f"late_{i + 1}", {late[i]: 1, start[i]: -1}, ">=", duration[i] - due[i])
        for j in range(i + 1, n):
            order = m.variable(f"before_{i + 1}_{j + 1}", kind="binary")   # 1: job i runs before job j
            m.constrain(f"no_overlap_{i + 1}_{j + 1}_a", {start[i]: 1, start[j]: -1, order: big_m}, "<=",
                        big_m - duration[i])
            m.constrain(f"no_overlap_{i + 1}_{j + 1}_b", {start[j]: 1, start[i]: -1, order: -big_m}, "<=",
                        -duration[j])
    m.objective = dict(zip(late, weight))
    facts = "; ".join(f"{j} takes {duration[i]} hours, is due at hour {due[i]} and costs {weight[i]} per hour late"
                      for i, j in enumerate(jobs))
    if phrasing == 0:
        text = (f"One machine processes {n} jobs, one at a time, starting at hour 0: {facts}. Find the order that "
                "minimises the total weighted lateness. What is the minimum?")
    else:
        text = (f"Jobs share a single machine that can run only one job at once (no interruptions): {facts}. "
                "Schedule them to make the weighted sum of hours late as small as possible and give that sum.")
    return Problem("scheduling", size, phrasing, text, m)


def inventory(rng: np.random.Generator, size: str, phrasing: int) -> Problem:
    t = {"toy": 2, "small": 4, "medium": 200}[size]
    demand = rng.integers(10, 50, t)
    unit = rng.integers(2, 8, t)
    setup = rng.integers(20, 80, t)
    hold = int(rng.integers(1, 3))
    capacity = int(demand.max() * 2)
    m = LinearModel(f"inventory_{size}", "minimize")
    make = [m.variable(f"produce_{p + 1}") for p in range(t)]
    stock = [m.variable(f"stock_{p + 1}") for p in range(t)]
    run = [m.variable(f"setup_{p + 1}", kind="binary") for p in range(t)]
    for p in range(t):
        balance = {make[p]: 1, stock[p]: -1}
        if p:
            balance[stock[p - 1]] = 1
        m.constrain(f"balance_{p + 1}", balance, "==", demand[p])
        m.constrain(f"capacity_{p + 1}", {make[p]: 1, run[p]: -capacity}, "<=", 0)
    m.objective = {**dict(zip(make, unit)), **dict(zip(run, setup)), **{s: hold for s in stock}}
    periods = "; ".join(f"month {p + 1}: demand {demand[p]}, unit cost ${unit[p]}, setup cost ${setup[p]}"
                        for p in range(t))
    if phrasing == 0:
        text = (f"A plant plans {t} months of production with no starting stock. {periods}. Producing in a month "
                f"incurs its setup cost, and at most {capacity} units can be made per month. Units left at the end "
                f"of a month cost ${hold} each to hold. Demand must be met on time. What is the minimum total cost?")
    else:
        text = (f"Monthly capacity is {capacity} units, holding costs ${hold} per unit per month, and a month with "
                f"any production pays its setup cost. Plan: {periods}. Starting stock is zero and every month's "
                "demand must be met from stock. Minimise production, setup and holding costs; report the total.")
    return Problem("inventory", size, phrasing, text, m)


FAMILIES: dict[str, Callable[[np.random.Generator, str, int], Problem]] = {
    "production": production, "transportation": transportation, "assignment": assignment,
    "knapsack": knapsack, "facility": facility, "blending": blending, "scheduling": scheduling,
    "inventory": inventory}
PHRASINGS = 2


def generate(family: str, *, rng: np.random.Generator, size: str = "toy", phrasing: int | None = None,
             solve_it: bool = True) -> Problem:
    """One instance of `family` at `size` (phrasing drawn from rng unless given), solved unless told not to."""
    if family not in FAMILIES:
        raise ValueError(f"unknown problem family {family!r}; known: {sorted(FAMILIES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {SIZES}")
    phrasing = int(rng.integers(PHRASINGS)) if phrasing is None else phrasing
    if not 0 <= phrasing < PHRASINGS:
        raise ValueError(f"phrasing must be in [0, {PHRASINGS}), got {phrasing}")
    problem = FAMILIES[family](rng, size, phrasing)
    return problem.solved() if solve_it else problem


def dataset(n: int, *, seed: int, families: list[str] | None = None, size: str = "toy") -> list[Problem]:
    """n solved problems cycling through the families, each with its own draw and phrasing."""
    names = families or sorted(FAMILIES)
    rng = np.random.default_rng(seed)
    return [generate(names[i % len(names)], rng=rng, size=size) for i in range(n)]
