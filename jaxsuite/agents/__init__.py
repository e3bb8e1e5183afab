"""The agent runtime every tool-using or code-judging system in jaxsuite shares (docs/agents.md).

  chat         OpenAI-style messages; a tokenizer's own chat template or the built-in Qwen3 format; ChatFormat
  parse        assistant text -> reasoning, content, tool calls (json5, brace repair), format errors, answer
  tools        typed tools with JSON schemas, the Toolbox (failures as observations), built-in tools
  sandbox      untrusted code in confined subprocesses (limits, no network, own uid and filesystem view)
  retrieval    jsonl corpora and BM25 (bm25s), the Retriever interface
  environment  tasks, budgets, environments, episode counts
  rollout      batched multi-turn episodes through jaxsuite.generate, packed for the RL core
  chat_model   one interface for an in-process model and any OpenAI-compatible endpoint
  server       the OpenAI-compatible app behind `python -m jaxsuite.serve`
  traces       episodes over a ChatModel; JSONL traces, transcripts, replay
  lookup/      the demonstration job (configs/agent_tiny.py)
"""
