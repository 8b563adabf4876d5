"""Egress through fnhost's proxy: an allow-list per set and credentials the
worker never sees. ``policy`` is what users write (exported by ``host``);
``gateway`` is the host's end; ``proxy_main`` (with ``exchange``,
``rules``, ``certificates``, ``scrubbing``) runs in a process of its own."""
