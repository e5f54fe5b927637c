"""The OpenAI-compatible inference server: harmony/, openai/, generation/, engines/, runtime.py (see ARCHITECTURE.md).
Imports torch/fastapi lazily.
"""
