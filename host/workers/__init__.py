"""A function set's workers: a worker's life (start, restart, park, reload,
close), one call's path (gate, deadlines, cancel, resend), one process
incarnation and how its death becomes each call's error. Uses `wire` and
`launch`.
"""
