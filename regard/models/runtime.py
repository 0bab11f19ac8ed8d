"""ONNX Runtime sessions, set up the same way for every model."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime as ort

_threads: int | None = None  # set_threads(): this process's choice, over the settings'


def set_threads(threads: int | None) -> None:
    """Threads per model session for the sessions this process builds from now on (None: the
    settings' again). A worker process is told this by whoever starts it (bulk enrollment: its
    pool's initializer), rather than through the environment."""
    global _threads
    _threads = None if threads is None else max(1, int(threads))


def default_threads() -> int:
    """Threads per model session: set_threads()'s, else $REGARD_THREADS, else 1 (one photo per
    core scales best)."""
    if _threads is not None:
        return _threads
    from regard import config

    return config.current().threads


def new_session(model: bytes | str, num_threads: int) -> ort.InferenceSession:
    """A CPU inference session with full graph optimisation and a fixed thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Flush denormal floats to zero: CenterFace produces some, and they are slow on x86.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.log_severity_level = 3  # the shipped graphs carry unused BN counters; do not warn
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
