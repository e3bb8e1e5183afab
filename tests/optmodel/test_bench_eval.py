"""The benchmark evaluation job end to end against an OpenAI-compatible endpoint over real HTTP: a small server
in the test answers each NL4Opt question with the program of its structured model (correct), or with a broken
one, and the job's figures must say so."""
import http.server
import json
import threading
from pathlib import Path

import pytest

from jaxsuite.core.config_utils import load_config
from jaxsuite.optmodel import bench_eval
from jaxsuite.optmodel.benchmarks import read_nl4opt
from jaxsuite.optmodel.programs import construction_prompt, render_program

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "optbench"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="shared/data/optbench is not beside the checkout")


class Oracle(http.server.BaseHTTPRequestHandler):
    answers: dict[str, str] = {}
    requests: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        answer = self.answers[body["messages"][-1]["content"]]
        choices = [{"index": i, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                   for i in range(body.get("n", 1))]
        data = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "choices": choices,
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Oracle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _config(tmp_path, endpoint):
    source = DATA / "nl4opt_dev.jsonl"
    small = tmp_path / "nl4opt.jsonl"
    small.write_text("".join(source.read_text().splitlines(keepends=True)[:3]))
    c = load_config("configs/evoopt_bench.py")
    c.benchmarks = ["nl4opt"]
    c.files.nl4opt = str(small)
    c.model.update(endpoint=endpoint, name="oracle")
    c.eval.update(k=2, workers=2)
    return c, read_nl4opt(small)


def test_correct_answers_score_one_and_broken_ones_are_repaired(tmp_path, endpoint):
    config, problems = _config(tmp_path, endpoint)
    Oracle.answers = {construction_prompt(p.question): f"```python\n{render_program(p.model, 'cvxpy')}```"
                      for p in problems}
    results = bench_eval.run(config, str(tmp_path / "right"))
    figures = results["benchmarks"]["nl4opt"]
    assert figures["raw"]["mean@2"] == 1.0 and figures["raw"]["majority_vote"] == 1.0
    assert figures["raw"]["problems"] == 3 and Oracle.requests[-1]["n"] == 2 and Oracle.requests[-1]["model"] == "oracle"
    # the same programs with the import left out: nothing runs as written, everything after repair
    Oracle.answers = {q: a.replace("import cvxpy as cp\n", "") for q, a in Oracle.answers.items()}
    broken = bench_eval.run(config, str(tmp_path / "broken"))["benchmarks"]["nl4opt"]
    assert broken["raw"]["mean@2"] == 0.0 and broken["raw"]["outcomes"]["failed"] == 1.0
    assert broken["repaired"]["mean@2"] == 1.0
    saved = json.loads((tmp_path / "broken" / "nl4opt" / "eval.json").read_text())
    assert len(saved["answers"]) == 6 and all(a["repaired_correct"] for a in saved["answers"])
    asked = len(Oracle.requests)
    assert bench_eval.run(config, str(tmp_path / "broken"))["benchmarks"] == {"nl4opt": broken}
    assert len(Oracle.requests) == asked                 # read back: nothing asked again


def test_configuration_errors_are_one_line(tmp_path, endpoint):
    config, _ = _config(tmp_path, endpoint)
    config.model.endpoint = ""
    with pytest.raises(ValueError, match="set model.endpoint"):
        bench_eval.run(config, str(tmp_path / "a"))
    config.files.nl4opt = str(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        bench_eval.run(config, str(tmp_path / "b"))
    config.benchmarks = ["industryor"]
    with pytest.raises(ValueError, match="unknown"):
        bench_eval.run(config, str(tmp_path / "c"))
