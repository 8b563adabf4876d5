"""The fnhost worker: runs inside its own subprocess as ``python -I -m worker``.

It imports one function set, reports its schemas and serves calls. It never
imports ``host``; the host never imports this package.
"""
