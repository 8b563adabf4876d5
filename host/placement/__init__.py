"""Where a function set's workers run: on this machine (the default), or
on a Ray cluster (``RayPlacement``, ``docs/ray.md``).

Nothing here imports ``ray`` at module level: only the driver's
``ray_cluster`` and ``ray_set_workers`` import it, inside their functions,
so fnhost without the ``ray`` extra never needs it.
"""
