"""The worker start sequence, shared by a plain spawn (``python -I -m worker``)
and a worker forked from the zygote. The order matters; see docs/sandbox.md.
What the host tells the worker is ``protocol.worker_config``.

1. (``python -I``) Everything the worker itself needs is imported at the top
   of this module, before any user code can touch ``sys.modules``.
2. Bind the protocol fds (passed with ``pass_fds`` or by the zygote; never
   0, 1 or 2).
3. fd 0 -> /dev/null; fd 1/2 are the host's capture files.
4. Parent-death signal (then re-check the parent), rlimits, no-new-privs.
   The host (or the zygote) already put us in our own session, in a scratch
   cwd, with an allow-listed environment. Then, where the host is root, an
   own uid and mount/IPC/PID namespaces (worker/enclosure.py: this process
   becomes a warden, and the worker continues in its namespace, under the
   warden's pid number).
   Before that split, a memory cgroup of its own (worker/memory_cgroup.py;
   a spare joined its own at its fork). Then the stronger layers the set's
   policy asks for (user/network namespaces, Landlock, a seccomp filter),
   each probed; see worker/confinement.py. An egress set's door to the
   host's proxy is opened in its own network namespace while it still holds
   capabilities there (worker/egress_door.py), and its proxy variables and
   CA bundle are set before user code.
5. Send the probed report (``probed``): before any user code. Close every
   inherited fd but the protocol pipes and the capture files.
   A standby (``WorkerConfig.standby``) then waits for the host's ``load``.
6. Import the user module.  7. Discover functions.  8. Build each schema.
9. Send ``ready`` (or ``load_failed``), then serve.

Exit codes: 0 shutdown/EOF, 70 parent already gone, 74/76 I/O or protocol
failure (reason on stderr; 76 too for a config that breaks the contract).
A load failure is reported as ``load_failed`` and the worker exits 0 after it.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from typing import NoReturn

import msgpack  # noqa: F401 - imported now, before user code can shadow it

from protocol import (
    PROTOCOL_VERSION,
    ErrorKind,
    Notification,
    ProtocolViolation,
    Verb,
    encode_message,
)
from protocol.memory_cgroup import limit_bytes
from protocol.messages import make_error_map
from protocol.worker_config import WorkerConfig
from protocol.worker_conversation import WorkerConversation
from worker import (
    confinement,
    egress_door,
    enclosure,
    memory_cgroup,
    network_note,
    private_view,
    sandbox,
    standby,
)
from worker.ahead import entered_ahead
from worker.capture import OutputCapture
from worker.loader import (
    ModuleLoadError,
    add_site_packages,
    discover_functions,
    import_module,
)
from worker.serve import Server, describe_exception, write_all
from worker.signature import FunctionSkipped, FunctionSpec, describe_function


def main(config_json: str) -> NoReturn:
    """``python -I -m worker CONFIG_JSON``: read the config, then ``run``.

    A config that is not JSON or breaks the contract (``WorkerConfig.from_wire``)
    exits 76 with the reason on stderr (the host's capture file: the load
    fails with it), before anything else happens.
    """
    try:
        config = WorkerConfig.from_wire(json.loads(config_json))
    except (ValueError, ProtocolViolation) as exc:  # JSONDecodeError is a ValueError
        os.write(2, f"fnhost worker: unusable config: {exc}\n".encode())
        os._exit(76)
    run(config)


def run(config: WorkerConfig) -> NoReturn:
    """The start sequence, from step 2; never returns (serves, then ``os._exit``).

    ``config.death_parent`` is the process whose death must kill us: the
    host for a plain spawn, the zygote for a forked worker.
    """
    in_fd, out_fd = config.in_fd, config.out_fd
    for fd in (in_fd, out_fd):
        os.set_inheritable(fd, False)  # a subprocess of user code does not get them
    capture = OutputCapture()

    # A segfault in user code prints the Python traceback to fd 2, which the
    # host reads back as the crash's stderr tail.
    faulthandler.enable(file=sys.__stderr__ or 2, all_threads=True)
    sandbox.detach_stdin()
    ahead = entered_ahead()
    if ahead is not None:
        # Entered ahead by the zygote's spare (enclosure.enter): our parent
        # is init, armed then; the session's leader is the warden, outside.
        protections = {
            "own_session": os.getsid(0) == 0,
            "parent_death_signal": ahead.parent_death,
        }
    else:
        protections = {
            "own_session": sandbox.in_own_session(),
            "parent_death_signal": sandbox.die_with_parent(config.death_parent),
        }
    enclosure.prepare_ids(config.sandbox)  # runs setuid tools: before no_new_privs
    protections["no_new_privileges"] = sandbox.no_new_privileges()
    # All of the worker's memory under one limit (protocol.memory_cgroup):
    # joined before its warden's init and the worker proper are forked, so
    # they are born inside. A spare entered ahead joined at its fork, and
    # the zygote set the request's limit when it took the request.
    cgroup_limit = limit_bytes(config.limits)
    if ahead is None and config.memory_cgroup is not None and cgroup_limit is not None:
        joined = memory_cgroup.join(config.memory_cgroup, os.getpid())
        if joined is not None:
            memory_cgroup.set_limit(joined, cgroup_limit)
    limits = sandbox.SandboxLimits(**config.limits)
    protections.update({f"rlimit_{k}": v for k, v in sandbox.apply_limits(limits).items()})
    policy = config.sandbox
    # Seen now, with the host's view of the filesystem (see import_module).
    missing = config.path is not None and not os.path.isfile(config.path)
    # Own uid and namespaces first: from here on this process may be the worker
    # of its own PID namespace, below a warden and an init (enclosure.py).
    set_paths = [
        *([os.path.dirname(config.path)] if config.path else []),
        *config.extra_sys_path,
    ]
    # A worker with its own uid reads what others may, and its module file:
    # the set's directory only if others may search it (a 0700 directory
    # can hold the host's secrets beside the module).
    reach = [
        *(p for p in set_paths if os.path.exists(p) and private_view.open_to_others(p, 0o001)),
        *(policy.get("readable_paths") or ()),
    ]
    egress_fd = None if config.egress is None else config.egress["fd"]
    enclosed = enclosure.enclose(
        policy,
        config.limits,
        os.getcwd(),
        [in_fd, out_fd, *([] if egress_fd is None else [egress_fd])],
        reach=confinement.readable_paths(reach),
        granted=[config.path] if config.path else [],
        parent_reaps_orphans=config.forked,
        egress_fd=egress_fd,
        ahead=ahead,
    )

    def _close_protocol_in_child() -> None:
        # A process forked by user code never talks to the host.
        for fd in (in_fd, out_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    os.register_at_fork(after_in_child=_close_protocol_in_child)
    standby_name = standby.mark() if config.standby else None
    # Checked here, in the worker's PID namespace, before Landlock may hide
    # /sys: what the kernel says, not what join() returned.
    in_cgroup = (
        config.memory_cgroup is not None
        and cgroup_limit is not None
        and memory_cgroup.verify(config.memory_cgroup, os.getpid(), cgroup_limit)
    )

    # Namespaces, Landlock, then probes of what they claim; see confinement.py.
    report, unmet = confinement.apply(
        policy,
        host_pid=config.host_pid,
        parent_pid=config.death_parent,
        scratch=os.getcwd(),
        capture_fds=capture.fds,
        set_paths=set_paths,
        enclosed=enclosed,
        host_uid=config.host_uid,
        egress_fd=egress_fd if enclosed.door is None else None,
    )
    protections.update(report)
    # Processes and threads: counted per uid and user namespace, and uid 0
    # (a root host's, kept without an own uid) is exempt from the limit.
    protections["rlimit_processes"] = sandbox.set_process_limit(
        config.limits.get("max_processes"),
        own_count=bool(
            report.get("own_uid") or (report.get("user_namespace") and config.host_uid != 0)
        ),
    )
    if config.egress is not None:
        egress_door.announce(config.egress, os.getcwd())
    # With every layer in place: a worker that can still rewrite its limit
    # (root without namespaces) has none.
    in_cgroup = (
        in_cgroup
        and config.memory_cgroup is not None
        and memory_cgroup.locked(config.memory_cgroup, os.getpid())
    )
    protections["memory_cgroup"] = in_cgroup
    if config.memory_cgroup is not None and cgroup_limit is not None and not in_cgroup:
        unmet.append("memory_cgroup (not in a memory cgroup under its limit it cannot change)")
    # The report leaves before any user code runs: nothing the module does
    # at import can change what the host believes (the host takes the
    # report from this message only).
    conversation = WorkerConversation()
    conversation.probed_sent()
    write_all(out_fd, encode_message(Notification(Verb.PROBED, {"protections": protections})))
    if unmet and policy.get("required"):
        message = "the sandbox policy requires layers not in force here: " + "; ".join(unmet)
        err = make_error_map(ErrorKind.IMPORT_FAILED, message, "SandboxUnavailable")
        conversation.load_failed_sent()
        write_all(out_fd, encode_message(Notification(Verb.LOAD_FAILED, {"error": err})))
        os._exit(0)
    if config.standby:
        # Started ahead of need (host.workers.standby): the set is imported
        # only when the host takes this worker, whose layers are all in force.
        try:
            go = standby.await_load(in_fd, conversation, standby_name)
        except (OSError, ProtocolViolation) as exc:
            os.write(2, f"fnhost worker: standby: {exc}\n".encode())
            os._exit(76)
        if not go:
            os._exit(0)
    sys.dont_write_bytecode = True  # never write into the user's directories
    for entry in config.extra_sys_path:
        if entry not in sys.path:
            sys.path.append(entry)

    # Nothing inherited reaches user code but what the worker uses: no
    # socket or pipe of the zygote, a spare or the host that a bug elsewhere
    # left open (a worker holding a spare's socket could start a worker of
    # its own making).
    sandbox.close_inherited_fds({0, 1, 2, in_fd, out_fd, *capture.fds})
    my_pid = os.getpid()
    try:
        add_site_packages()  # an environment's .pth files are the set's code: only now
        module = import_module(config.path, config.module, config.set_name, missing)
        exported = discover_functions(module)
    except BaseException as exc:  # SystemExit(0) at import is a failure too
        if os.getpid() != my_pid:
            os._exit(0)
        type_name, message, trace_text = describe_exception(exc)
        trace: str | None = trace_text
        if isinstance(exc, ModuleLoadError):
            trace = None
        elif isinstance(exc, SystemExit):
            message = f"the module called sys.exit({message or ''}) while being imported"
        err = make_error_map(ErrorKind.IMPORT_FAILED, message, type_name, trace)
        conversation.load_failed_sent()
        write_all(
            out_fd,
            encode_message(Notification(Verb.LOAD_FAILED, {"error": err, **capture.collect()})),
        )
        os._exit(0)
    if os.getpid() != my_pid:
        os._exit(0)

    specs: dict[str, FunctionSpec] = {}
    skipped: list[dict[str, str]] = []
    for name, fn in exported.items():
        try:
            specs[name] = describe_function(name, fn)
        except FunctionSkipped as exc:
            skipped.append({"name": name, "reason": str(exc)})
        except Exception as exc:  # a hostile annotation object, say
            skipped.append({"name": name, "reason": f"{type(exc).__name__}: {exc}"[:1000]})

    functions = [
        {
            **spec.schema,
            "returns": spec.returns,
            "warnings": spec.warnings,
        }
        for spec in specs.values()
    ]
    ready = {
        "protocol": PROTOCOL_VERSION,
        "pid": my_pid,
        "functions": functions,
        "skipped": skipped,
        **capture.collect(),
    }
    try:
        frame = encode_message(Notification(Verb.READY, ready))
    except (TypeError, ValueError) as exc:
        err = make_error_map(ErrorKind.IMPORT_FAILED, f"schemas cannot be encoded: {exc}")
        conversation.load_failed_sent()
        write_all(out_fd, encode_message(Notification(Verb.LOAD_FAILED, {"error": err})))
        os._exit(0)
    conversation.ready_sent()
    write_all(out_fd, frame)
    server = Server(
        in_fd,
        out_fd,
        specs,
        capture,
        max_frame_size=config.max_frame_size,
        max_result_bytes=config.max_result_bytes,
        conversation=conversation,
    )
    allow = [] if config.egress is None else config.egress["allow"]
    server.network_note = network_note.note_for(policy, config.set_name, allow)
    server.network_refusals = not protections.get("network_namespace", False)
    server.run()
