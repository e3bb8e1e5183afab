"""Serves a model over the OpenAI chat-completions API (jaxsuite.agents.server).

    python -m jaxsuite.serve --model runs/qwen3/hf [--name qwen3] [--host 127.0.0.1] [--port 8000]
                             [--max_batch_rows 16] [--batch_window_ms 5] [--max_context N] [--dtype bfloat16]

--model is a Hugging Face folder (config.json, safetensors, tokenizer; its chat template is used when it has
one) or a job's workdir that exported one to hf/. Clients: any OpenAI client with base_url
http://HOST:PORT/v1 and the model id --name (default: the folder's name).
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxsuite.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF folder, or a workdir with hf/")
    parser.add_argument("--name", default=None, help="model id clients ask for (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_batch_rows", type=int, default=16, help="sampled rows per decode batch")
    parser.add_argument("--batch_window_ms", type=float, default=5.0, help="how long a batch waits to fill")
    parser.add_argument("--max_context", type=int, default=None, help="default: max_position_embeddings")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    import jax.numpy as jnp
    import uvicorn

    from jaxsuite.agents.chat_model import LocalChatModel
    from jaxsuite.agents.server import make_app
    try:
        model = LocalChatModel.from_folder(args.model, name=args.name, dtype=getattr(jnp, args.dtype))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.max_context:
        model.max_context = args.max_context
    print(f"serving {model.name!r} at http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(make_app(model, max_batch_rows=args.max_batch_rows, batch_window_ms=args.batch_window_ms),
                host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
