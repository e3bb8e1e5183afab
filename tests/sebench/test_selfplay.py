"""Self-play's proposals: parsed, checked by execution in the sandbox, kept with their own solution's outputs
(compared with NumPy), and the unsound ones dropped."""
import json
import random

import numpy as np

from jaxsuite.agents.sandbox import SandboxPool
from jaxsuite.sebench import selfplay as S
from jaxsuite.sebench.docs import rewrite_doc


def test_a_training_task_becomes_a_proposal_and_parses_back(mapping):
    task = {"query": "Return the running totals of `x`.", "solution": "import zwc\ndef solve(x):\n    return x\n"}
    text = S.proposal_response(task)
    assert S.parse_proposal(text) == (task["query"], task["solution"])
    assert S.parse_proposal("no task here\n```python\nx = 1\n```") is None
    assert S.parse_proposal("Task: something") is None
    prompt = S.proposal_prompt(rewrite_doc("cumsum", mapping))
    assert f"uses zwc.{mapping.main['cumsum']}:" in prompt and "numpy" not in prompt.lower()


def test_sound_proposals_are_kept_with_their_outputs_and_unsound_ones_dropped(mapping, zwc_dir):
    cumsum, argmax = mapping.main["cumsum"], mapping.main["argmax"]
    proposals = {
        "sound": f"Task: Return the running totals of `x`.\n```python\nimport zwc\ndef solve(x):\n"
                 f"    return zwc.{cumsum}(x)\n```",
        "sound, a number": f"Task: Where is the largest entry?\n```python\nimport zwc\ndef solve(x):\n"
                           f"    return zwc.{argmax}(x)\n```",
        "no package": "Task: Return x.\n```python\ndef solve(x):\n    return x\n```",
        "crashes": f"Task: Break.\n```python\nimport zwc\ndef solve(x):\n    return zwc.{cumsum}(x)[100]\n```",
        "prints text": f"Task: Describe.\n```python\nimport zwc\ndef solve(x):\n"
                       f"    return 'total ' + str(zwc.{cumsum}(x))\n```",
        "no task line": f"```python\nimport zwc\ndef solve(x):\n    return zwc.{cumsum}(x)\n```",
    }
    functions = ["cumsum", "argmax", "cumsum", "cumsum", "cumsum", "cumsum"]
    with SandboxPool(workers=2) as pool:
        kept = S.check_proposals(list(proposals.values()), functions, mapping, zwc_dir, pool, random.Random(0))
    verdict = dict(zip(proposals, kept))
    assert [name for name, task in verdict.items() if task is not None] == ["sound", "sound, a number"]
    for name, numpy_fn in (("sound", np.cumsum), ("sound, a number", np.argmax)):
        task = verdict[name]
        assert len(task["test_cases"]) == 8 and task["selected_functions"] == [functions[list(proposals).index(name)]]
        for case in task["test_cases"]:
            x = json.loads(case["input"][len("x="):])
            assert json.loads(case["output"]) == np.asarray(numpy_fn(x)).tolist()
