"""Reading a set's file in the host: a regular file, bounded.

The host reads a set's source itself (its ``# /// script`` block, the
schema cache's key) before and between workers. The file may be the set's
to write (``writable_paths`` over its own directory), so it may have become
a FIFO, whose ``open`` blocks forever, or a link to ``/dev/zero``, which
never ends. ``read_set_file`` opens without blocking, refuses anything but
a regular file and reads at most ``MAX_SET_FILE_BYTES``.
"""

from __future__ import annotations

import errno
import os
import stat

#: The largest set file the host reads (a module's source; 16 MiB is far
#: beyond any hand- or model-written one).
MAX_SET_FILE_BYTES = 16 * 1024 * 1024


def read_set_file(path: str) -> bytes:
    """The content of the set file at ``path``.

    Raises ``OSError``: the file cannot be opened, is not a regular file
    (a FIFO, a device, a directory: ``EINVAL`` naming it), or is larger
    than ``MAX_SET_FILE_BYTES`` (``EFBIG``). Never blocks on a FIFO.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {path}")
        if st.st_size > MAX_SET_FILE_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_SET_FILE_BYTES} bytes: {path}")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_SET_FILE_BYTES:  # grew while read
                raise OSError(errno.EFBIG, f"larger than {MAX_SET_FILE_BYTES} bytes: {path}")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
