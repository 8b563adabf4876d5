"""Source text for function sets that write to the protocol pipe themselves.

``FORGE_PRELUDE`` starts such a set: ``_send(message)`` writes one framed
msgpack message to the worker's reply pipe, as a hostile function can, and
``_running_call()`` finds the ``msgid`` of the call running it (from the
worker's own frames), so a forged message can name it.
"""

FORGE_PRELUDE = """
import json
import os
import struct
import sys
import time

import msgpack


def _send(message) -> None:
    body = msgpack.packb(message)
    os.write(json.loads(sys.argv[1])["out_fd"], struct.pack(">I", len(body)) + body)


def _running_call() -> int:
    frame = sys._getframe()
    while not hasattr(frame.f_locals.get("msg"), "msgid"):
        frame = frame.f_back
    return frame.f_locals["msg"].msgid
"""
