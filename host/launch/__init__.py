"""How a worker process comes to life: the launcher (zygote fork or spawn), the
zygote client, and removing a worker's directory after it.
"""
