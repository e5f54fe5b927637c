"""engines/: the models behind the pipeline — interface.py (Engine, ChatBackend, EngineHooks), build.py (from
ServeSettings), transformers/, upstream/, vllm/, scripted.py.
"""
