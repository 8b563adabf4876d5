"""Provider formats, pure: tool definitions for each provider, parsing model
tool calls, rendering results and errors as model-safe text. No processes.
"""
