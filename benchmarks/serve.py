"""The OpenAI-compatible server under concurrent clients, against transformers' generate serving the same model
one request at a time.

  python benchmarks/serve.py                     # ~76M-parameter Qwen3 (lm_setup.BENCH_ARCH), 16 requests,
                                                 # 32 new tokens each, at 1, 4 and 16 concurrent clients

jaxsuite: `python -m jaxsuite.serve`'s app (jaxsuite.agents.server) in a thread, clients posting
/v1/chat/completions over HTTP (httpx) from a thread pool; requests that arrive together share a decode call.
transformers: `model.generate` on each request's prompt ids in turn (what a plain HF serving loop does), the
same weights and prompts. Both decode exactly `--new` tokens greedily (no stop token), so the token counts are
equal; compilation is excluded (the whole sweep runs once to warm up, then again to measure).

Floor: a decode step reads every weight once (~304 MB in float32), which at ~10-20 GB/s takes 15-30 ms
whatever the batch size, so one batched step of 16 rows costs about what one row's does: the most a batching
server can gain over one request at a time is ~the concurrency, here up to 16x, less the prompt prefill.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import time

from lm_setup import build_models, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--concurrency", default="1,4,16")
    args = parser.parse_args()
    import httpx
    import torch

    from jaxsuite.agents.chat import ChatFormat
    from jaxsuite.agents.chat_model import LocalChatModel
    from jaxsuite.agents.server import ServerThread, make_app
    from jaxsuite.core.tokenizer import ByteTokenizer

    tmodel, jmodel, n_params = build_models()
    fmt = ChatFormat(ByteTokenizer())
    local = LocalChatModel(jmodel, fmt, name="bench")
    local.stop_ids = ()                          # decode exactly --new tokens, as transformers does below
    questions = [[{"role": "user", "content": f"Question {k}: what is {k} times {k + 3}?"}]
                 for k in range(args.requests)]
    levels = [int(c) for c in args.concurrency.split(",")]
    body = lambda m: {"model": "bench", "messages": m, "temperature": 0, "max_tokens": args.new}

    def sweep(url: str) -> dict[int, tuple[float, int]]:
        out = {}
        with httpx.Client(base_url=url, timeout=600) as client:
            for c in levels:
                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(c) as pool:
                    replies = list(pool.map(lambda m: client.post("/chat/completions", json=body(m)).json(),
                                            questions))
                seconds = time.perf_counter() - t0
                out[c] = (seconds, sum(r["usage"]["completion_tokens"] for r in replies))
        return out

    with ServerThread(make_app(local, max_batch_rows=max(levels), batch_window_ms=20)) as url:
        sweep(url)                               # compiles every batch bucket the sweep produces
        measured = sweep(url)

    prompts = [fmt.encode(m, add_generation_prompt=True) for m in questions]
    with torch.no_grad():
        tmodel.generate(torch.tensor([prompts[0]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
        t0 = time.perf_counter()
        for p in prompts:
            tmodel.generate(torch.tensor([p]), max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                            pad_token_id=0, eos_token_id=None)
        hf_seconds = time.perf_counter() - t0
    hf_rps, hf_tps = args.requests / hf_seconds, args.requests * args.new / hf_seconds

    print(f"# {machine()}; {n_params / 1e6:.0f}M-parameter Qwen3, float32; {args.requests} requests x "
          f"{args.new} new tokens; prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens")
    print(f"transformers generate, one request at a time: {hf_rps:.2f} requests/s, {hf_tps:.1f} tokens/s")
    print("| concurrent clients | jaxsuite server requests/s | tokens/s | / transformers |")
    print("| --- | --- | --- | --- |")
    for c, (seconds, tokens) in measured.items():
        rps = args.requests / seconds
        print(f"| {c} | {rps:.2f} | {tokens / seconds:.1f} | {rps / hf_rps:.2f}x |")


if __name__ == "__main__":
    main()
