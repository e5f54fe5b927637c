"""generation/: the one pipeline every request takes — pipeline.py (cache, admission, observation), jobs.py (token and
relay jobs), scheduler.py, cache.py, run.py (tokens to harmony deltas, response_format retries), metrics.py,
gpu_metrics.py, record.py.
"""
