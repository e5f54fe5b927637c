"""The OpenAI-compatible inference server (imports torch/fastapi lazily)."""
