"""The in-process transformers engine: engine.py (one sequence), batching.py + batch_state.py (the batch loop),
sampling.py, numerics.py, memory.py (sizing before load).
"""
