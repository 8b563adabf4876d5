"""The embedding API: `FunctionHost`, loading and reloading sets, the registry
of names, dispatching model tool calls. Uses `tools` and `workers`.
"""
