"""openai/: the HTTP front — app.py (create_app), state.py (ServerState), endpoints/ (one module per endpoint),
harmony_front.py and relay_front.py (request to pipeline to reply), protocol.py, params.py, chat.py, completions.py,
sse.py, guard.py, accesslog.py, no_reasoning.py, openapi.py, handlers.py.
"""
