"""Any model on the public optimisation-modelling benchmarks: OptiBench, MAMO Easy/Complex, NL4Opt.

    python -m jaxsuite.launch --config configs/evoopt_bench.py --workdir runs/evoopt_bench \\
        --config.model.endpoint=http://localhost:8000/v1 --config.model.name=qwen2.5-7b-instruct
    python -m jaxsuite.launch --config configs/evoopt_bench.py:local --workdir runs/evoopt_bench \\
        --config.model.folder=runs/evoopt_tiny/hf          # a jaxsuite LM in-process (a saved HF folder)

The model is reached through the agent runtime's chat interface: an OpenAI-compatible endpoint (ours,
`python -m jaxsuite.serve`, or vLLM, or a hosted API; the key from `model.api_key_env`) or a local folder loaded
in-process. Each problem is asked with the model-construction prompt (jaxsuite.optmodel.programs), `eval.k`
answers at `eval.temperature`; every answer's program is run by the execution check in the sandbox, as written
and after rule-based repair, and judged by the benchmark's rule (`rules`: ORLM's by default, MAMO's or strict on
request). Per benchmark: generation rate, executability, mean@k, pass@k, majority vote and the outcome shares,
in results.json, with every answer and its outcome in <workdir>/<benchmark>/eval.json (a finished benchmark is
read back on a rerun).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ml_collections

from jaxsuite.agents.chat_model import ChatRequest
from jaxsuite.agents.sandbox import SandboxPool
from jaxsuite.core.metrics import phase
from jaxsuite.core.workdir import Workdir
from jaxsuite.optmodel import checker as C
from jaxsuite.optmodel.benchmarks import BENCHMARKS, DEFAULT_FILES, read_benchmark
from jaxsuite.optmodel.programs import construction_prompt
from jaxsuite.optmodel.repair import repair_answer

log = logging.getLogger(__name__)


def chat_model(config):
    """The model `config.model` names: an endpoint (OpenAIChatModel) or a local folder (LocalChatModel)."""
    m = config.model
    if m.get("endpoint"):
        from jaxsuite.agents.chat_model import OpenAIChatModel
        key = os.environ.get(str(m.get("api_key_env", "") or ""), "none") if m.get("api_key_env") else "none"
        return OpenAIChatModel(str(m.endpoint), model=str(m.name), api_key=key, timeout=float(m.get("timeout", 600)))
    if m.get("folder"):
        from jaxsuite.agents.chat_model import LocalChatModel
        if not Path(str(m.folder)).is_dir():
            raise FileNotFoundError(f"model.folder={m.folder!r} is not a folder")
        return LocalChatModel.from_folder(str(m.folder))
    raise ValueError("set model.endpoint (an OpenAI-compatible /v1 URL, with model.name) or model.folder (a local "
                     "Hugging Face folder)")


def ask(model, questions: list[str], config) -> list[str]:
    """eval.k answers per question (question-major), `eval.batch_size` requests per call."""
    ev = config.eval
    requests = [ChatRequest([{"role": "user", "content": construction_prompt(q)}],
                            temperature=float(ev.temperature), max_tokens=int(ev.max_new_tokens), n=int(ev.k),
                            seed=int(config.seed) + i, enable_thinking=bool(ev.get("thinking", False)))
                for i, q in enumerate(questions)]
    texts = []
    size = int(ev.batch_size)
    for start in range(0, len(requests), size):
        for result in model.complete(requests[start:start + size]):
            if len(result.choices) != int(ev.k):
                raise ValueError(f"the model returned {len(result.choices)} answers for n={int(ev.k)}")
            texts += [c.message.get("content") or "" for c in result.choices]
    return texts


def evaluate_benchmark(model, name: str, path: str, config, wd: Workdir, pool: SandboxPool) -> dict:
    if wd.exists(f"{name}/eval.json"):
        return wd.read_json(f"{name}/eval.json")["summary"]
    problems = [p for p in read_benchmark(name, path) if p.reference is not None]
    limit = int(config.get("limit", 0) or 0)
    problems = problems[:limit] if limit else problems
    if not problems:
        raise ValueError(f"{name}: no problem with a reference value in {path}")
    k = int(config.eval.k)
    rule = str(config.rules.get(name, config.eval.rule))
    with phase(f"{name}: {len(problems)} problems x {k} answers", 0):
        texts = ask(model, [p.question for p in problems], config)
    refs = [p.reference_text or p.reference for p in problems for _ in range(k)]
    check = dict(rule=rule, timeout=float(config.eval.timeout), workers=int(config.eval.workers), pool=pool)
    raw = C.check_many(texts, refs, **check)
    repaired_texts, applied = zip(*[repair_answer(t) for t in texts])
    changed = [i for i, a in enumerate(applied) if a]
    repaired = list(raw)
    for i, result in zip(changed, C.check_many([repaired_texts[i] for i in changed], [refs[i] for i in changed],
                                               **check)):
        repaired[i] = result
    references = [p.reference_text or p.reference for p in problems]
    summary = {"rule": rule, "raw": C.summarise(raw, k, references, rule=rule),
               "repaired": C.summarise(repaired, k, references, rule=rule)}
    records = [{"id": problems[i // k].id, "answer": t, "outcome": a.outcome, "objective": a.objective,
                "correct": a.correct, "repaired_outcome": b.outcome, "repaired_correct": b.correct}
               for i, (t, a, b) in enumerate(zip(texts, raw, repaired))]
    if wd.primary:
        wd.write_json(f"{name}/eval.json", {"summary": summary, "answers": records})
    return summary


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    unknown = sorted(set(config.benchmarks) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"config.benchmarks: unknown {unknown}; known: {list(BENCHMARKS)}")
    data_dir = Path(str(config.data_dir))
    paths = {name: str(config.files.get(name, "") or data_dir / DEFAULT_FILES[name]) for name in config.benchmarks}
    missing = [p for p in paths.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"benchmark file {missing[0]} does not exist (set data_dir or files.<benchmark>)")
    wd = Workdir.start(workdir)
    model = chat_model(config)
    k = int(config.eval.k)
    summaries = {}
    with SandboxPool(workers=int(config.eval.workers)) as pool:
        for name, path in paths.items():
            summaries[name] = evaluate_benchmark(model, name, path, config, wd, pool)
            log.info("%s: mean@%d %.3f (repaired %.3f), executability %.3f", name, k, summaries[name]["raw"][f"mean@{k}"],
                     summaries[name]["repaired"][f"mean@{k}"], summaries[name]["raw"]["executability"])
    return wd.finish(config, {"benchmarks": summaries, "model": str(config.model.get("name") or config.model.get("folder")),
                              "k": k})
