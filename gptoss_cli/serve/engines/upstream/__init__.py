"""Any OpenAI-compatible server as a request-level engine: backend.py (httpx client, chunk-by-chunk relay),
normalise.py, errors.py.
"""
