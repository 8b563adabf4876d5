"""The command line: `fnhost` (main), the MCP server, `doctor`, `check`. The
top layer: it uses the API.
"""
