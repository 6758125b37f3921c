"""`die_with_parent()`: vLLM's engine-core process never outlives the process that started it.

vLLM starts its engine core as a child process. If the server is killed with a signal it cannot
catch (SIGKILL, the OOM killer), nothing shuts the child down: it is reparented and goes on
holding its memory. Linux can tie a child to its parent: `PR_SET_PDEATHSIG` delivers a signal
to the child when the parent exits. streamrag's scheduler is built inside the engine-core
process, so it sets this there (engine/local/scheduler.py). vLLM's own workers already watch
their parent, the engine core.

The signal is only armed from the call on, and the scheduler is built after the model is
loaded: a parent killed during those seconds has already gone. A process started by
`multiprocessing` (vLLM's engine core is) knows its parent's pid from its start, so a parent
lost before the call is noticed too.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits. True if set."""
    if not sys.platform.startswith("linux"):
        return False
    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None else os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the call: nobody will signal us
        os.kill(os.getpid(), sig)
    return True
