"""The sandbox policy of a function set: which stronger isolation layers its
workers apply, on top of the always-on ones (own session, parent-death
signal, rlimits, no-new-privs, clean environment, scratch cwd)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from host.egress.policy import Egress


@dataclass(frozen=True)
class Sandbox:
    """What a set's workers are kept from. The defaults are the strict ones.

    - ``network``: ``False`` (default) puts each worker in its own network
      namespace (where namespaces are missing, the syscall filter refuses IP
      sockets): every IP connection, 127.0.0.1 included, fails. Unix sockets
      reachable by a path are not covered. ``True`` leaves the host's network
      reachable. ``Egress(allow=[...], credentials={...})``: the worker keeps
      its own network namespace, and its only way out is fnhost's egress
      proxy, which allows the listed hosts and ports (and methods and
      paths) only, and adds credentials the worker never sees (see
      ``Egress``; needs the ``egress`` extra and a network namespace).
    - ``confine_writes``: files can be created, written, renamed or removed
      only beneath the worker's scratch directory (its cwd, ``HOME`` and
      ``TMPDIR``), ``/dev/null``, its own stdout/stderr and ``writable_paths``.
      Reading and metadata changes (chmod, utime) are not restricted.
      ``multiprocessing`` needs ``/dev/shm`` here.
    - ``isolate_processes``: the worker cannot signal, ptrace, or read the
      memory or environment (``/proc/<pid>/environ``) of the host, the zygote
      or other workers (signals: Linux 6.12+).
    - ``user_namespace``: the worker runs in its own user namespace with no
      id mapped: no capability in the host's namespaces and none over any
      file. Its real uid still owns its files (a root host's workers can read
      root-owned files by their owner bits unless ``confine_reads``).
    - ``restrict_syscalls``: a seccomp filter refuses system calls tools do not
      need and that reach other processes or widen the kernel's attack
      surface (ptrace, new namespaces, mounts, bpf, keyrings, modules...), and
      signals aimed at the host or the zygote.
    - ``confine_reads`` (off by default: user code may read anything its
      user can): reading, listing and executing only the interpreter's import
      path and prefix, the set's directory, the scratch directory, system
      binaries and libraries, /dev, /proc, the parts of /etc that name
      resolution, TLS and time zones need, and ``readable_paths``. Keeps
      home directories, credentials and the host's project files out of
      reach (Landlock).
    - ``own_uid``: when the host runs as root, each worker runs as a uid and
      gid of its own, ``uid_base + pid`` (no supplementary groups): the
      kernel refuses it ``prlimit``, ``setpriority``, CPU affinity and
      scheduling, signals and ptrace against the host and other workers, and
      every file it creates is its own. A host that is not root gives its
      workers ids of the range ``/etc/subuid`` and ``/etc/subgid`` grant its
      user (through ``newuidmap``/``newgidmap``, package ``uidmap``), except
      to a set with ``writable_paths`` or a module file others may not
      read; without a range the report says ``own_uid: False``.
    - ``uid_base``: the first uid of the range (default ``0x70000000``;
      ``uid_base`` .. ``uid_base + 4,194,303`` must be unused on the machine).
    - ``private_namespaces``: when the host runs as root, each worker gets
      its own mount, IPC and PID namespaces: scratch and ``/dev/shm`` are
      one private tmpfs capped at ``Limits.disk_mb``, ``/dev/pts`` is a new
      instance (the host's terminals are absent), ``/proc`` shows only the
      worker's own processes, SysV shared memory is private and capped at
      ``memory_mb``, and every process the worker starts dies with it.
    - ``memory_cgroup``: where the host may make memory cgroups (root with
      cgroup v1; on v2 only a host in the root cgroup), each worker runs in one
      of its own whose limit is ``memory_mb + disk_mb`` and counts all of
      its memory: heap, page cache, its tmpfs (scratch, ``/dev/shm``), SysV
      shared memory it detached, ``memfd`` pages. Past it the kernel's OOM
      killer ends the worker and the call fails with ``OutOfMemory``.
      Elsewhere the report says ``memory_cgroup: False``.
    - ``required``: ``False`` (default) degrades cleanly where the kernel lacks
      a layer (``fh.protections(set)`` shows what holds). ``True`` makes
      loading the set fail (``LoadError``) unless every layer asked for is
      verified in force.

    Each layer is verified inside the worker by trying what it forbids; see
    ``FunctionHost.protections``. Landlock needs Linux 5.13+ (TCP rules 6.7+,
    signal scoping 6.12+); namespaces need unprivileged user namespaces or
    root.
    """

    network: bool | Egress = False
    confine_writes: bool = True
    writable_paths: tuple[str, ...] = ()
    isolate_processes: bool = True
    user_namespace: bool = True
    restrict_syscalls: bool = True
    confine_reads: bool = False
    readable_paths: tuple[str, ...] = ()
    own_uid: bool = True
    uid_base: int = 0x70000000
    private_namespaces: bool = True
    memory_cgroup: bool = True
    required: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.network, (bool, Egress)):
            raise TypeError("network must be True, False or an Egress policy")
        for name in ("writable_paths", "readable_paths"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a sequence of paths, not one path")
            paths = tuple(os.path.abspath(os.fspath(p)) for p in value)
            object.__setattr__(self, name, paths)
        if not 1 <= self.uid_base <= 2**32 - 2 - 4_194_304:
            raise ValueError("uid_base must leave room for 4,194,304 uids below 2**32 - 1")

    @classmethod
    def off(cls) -> Sandbox:
        """Only the always-on layers: for trusted code that needs the host's
        network, filesystem and processes."""
        return cls(
            network=True,
            confine_writes=False,
            isolate_processes=False,
            user_namespace=False,
            restrict_syscalls=False,
            own_uid=False,
            private_namespaces=False,
        )

    @property
    def egress(self) -> Egress | None:
        """The egress policy, if ``network`` is one."""
        return self.network if isinstance(self.network, Egress) else None

    def network_door(self) -> dict[str, Any]:
        """What ``FunctionHost.protections`` says of the way to the network,
        by this policy: ``egress`` (``"none"``, ``"unrestricted"`` or
        ``"allow-list"``) and, for an allow-list, its targets, its credential
        hosts and the hosts whose HTTPS the proxy terminates."""
        egress = self.egress
        if egress is None:
            return {"egress": "unrestricted" if self.network else "none"}
        return {
            "egress": "allow-list",
            "egress_allow": egress.targets,
            "egress_credentials": sorted(egress.credentials),
            "egress_intercepted": egress.intercepted_hosts(),
        }

    def worker_policy(self) -> dict:
        return {
            "network": self.network is True,
            "egress": isinstance(self.network, Egress),
            "confine_writes": self.confine_writes,
            "writable_paths": list(self.writable_paths),
            "isolate_processes": self.isolate_processes,
            "user_namespace": self.user_namespace,
            "restrict_syscalls": self.restrict_syscalls,
            "confine_reads": self.confine_reads,
            "readable_paths": list(self.readable_paths),
            "own_uid": self.own_uid,
            "uid_base": self.uid_base,
            "private_namespaces": self.private_namespaces,
            "required": self.required,
        }
