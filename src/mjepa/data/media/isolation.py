"""Run per-file decoding where a crash or a hang costs that file, not the process that asked for it.

FFmpeg is C: a damaged file can, in the worst case, crash the interpreter (a segmentation fault) or decode forever.
:class:`IsolatedRunner` runs a function in a helper process forked from the caller and reused for every call, so
the cost per call is the transfer of its result, not a fork. When the helper dies during a call, that call raises
``MediaError(path, "crashed", ...)`` naming the signal; when a call takes longer than ``timeout_s``, the helper is
killed and the call raises ``MediaError(path, "timeout", ...)``. Either way the next call starts a fresh helper.

The helper is a plain ``fork`` with a socket pair (not ``multiprocessing.Process``): it also works inside
DataLoader workers, which are daemonic and may not have ``multiprocessing`` children. It exits when the caller's
end of the socket closes, so it never outlives the caller.

Results cross the socket as pickles: functions run here should return NumPy arrays and plain values, not torch
tensors (torch pickles tensors through shared-memory handles meant for its own worker queues).
"""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import socket
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from mjepa.data.media.info import MediaError, unexpected_error


class IsolatedRunner:
    """Calls ``fn(*args)`` in a reusable helper process; see the module docstring."""

    def __init__(self, timeout_s: float = 120.0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._pid: int | None = None
        self._conn: Connection | None = None
        self._owner: int | None = None  # the process that started the helper (a fork inherits the attributes)

    def __getstate__(self) -> dict:
        return {"timeout_s": self.timeout_s}  # a copy in another process starts its own helper

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["timeout_s"])

    def __call__(self, path: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` run in the helper; raises what it raised, or MediaError for a crash or a timeout."""
        self._ensure_helper()
        try:
            self._conn.send((fn, args))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            return self._crashed(path)
        if not self._conn.poll(self.timeout_s):
            self.close()
            raise MediaError(
                path, "timeout", f"decoding took longer than {self.timeout_s:g} s; the decoder was stopped"
            )
        try:
            status, value = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            return self._crashed(path)
        if status == "ok":
            return value
        if status == "media_error":
            raise MediaError(*value)
        raise MediaError(path, "decoder_error", value)

    def _crashed(self, path: str):
        status = self._reap()
        self._pid, self._conn = None, None
        if status is not None and os.WIFSIGNALED(status):
            how = f"died of {signal.Signals(os.WTERMSIG(status)).name}"
        elif status is not None and os.WIFEXITED(status):
            how = f"exited with status {os.WEXITSTATUS(status)}"
        else:
            how = "stopped answering"
        raise MediaError(path, "crashed", f"the decoding process {how} on this file")

    def _ensure_helper(self) -> None:
        if self._pid is not None and self._owner == os.getpid():
            return
        self._pid, self._conn = None, None  # a helper started by another process (before a fork) is not ours
        parent_socket, child_socket = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the helper
            parent_socket.close()
            _serve(Connection(child_socket.detach()))
        child_socket.close()
        self._pid, self._conn, self._owner = pid, Connection(parent_socket.detach()), os.getpid()

    def _reap(self) -> int | None:
        if self._pid is None:
            return None
        try:
            _, status = os.waitpid(self._pid, 0)
            return status
        except ChildProcessError:
            return None

    def close(self) -> None:
        """Stop the helper (SIGKILL: it may be stuck inside the decoder)."""
        if self._pid is not None and self._owner == os.getpid():
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        if self._conn is not None and self._owner == os.getpid():
            self._conn.close()
        self._pid, self._conn = None, None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def leave_inherited_garbage(worker_id: int | None = None) -> None:
    """Call first in a process forked from one that may have decoded media (a decoding helper, a DataLoader worker:
    it is also a ``worker_init_fn``): garbage the parent had not collected yet is never freed here. A PyAV decoder
    caught in a reference cycle (an exception's traceback is enough) owns codec threads that do not exist in the
    fork, and freeing it here waits on them forever or crashes. The collector leaves frozen objects alone."""
    gc.freeze()


def _serve(conn: Connection) -> None:
    """The helper's loop: run each request, send back its result or its error; exit when the caller is gone."""
    # The caller's signal handlers (a DataLoader worker's, a training process's) are not the helper's business.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    faulthandler.disable()  # a crash here is reported by the caller, with the file's name; no stack dump
    leave_inherited_garbage()
    code = 0
    try:
        while True:
            try:
                fn, args = conn.recv()
            except (EOFError, OSError):
                break
            try:
                reply = ("ok", fn(*args))
            except MediaError as err:
                reply = ("media_error", (err.path, err.reason, err.detail))
            except Exception as err:  # noqa: BLE001 - reported to the caller as a decoder error on this file
                converted = unexpected_error("?", err)
                reply = ("error", converted.detail)
            try:
                conn.send(reply)
            except (BrokenPipeError, ConnectionResetError, OSError):
                break
    except BaseException:  # noqa: BLE001 - the helper must never return into the caller's code
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)
