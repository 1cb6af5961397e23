"""LLM reranking tiers (remote OpenAI-compatible, local GGUF) behind one chain."""
