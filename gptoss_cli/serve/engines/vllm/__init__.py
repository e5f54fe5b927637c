"""vLLM as a request-level engine: backend.py (a supervised `vllm serve` child on a private Unix socket),
supervisor.py.
"""
