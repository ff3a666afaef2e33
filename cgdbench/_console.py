"""The ``cgdbench`` console script: Ctrl-C or SIGTERM while the package loads (Numba, the kernels: about
half a second) is a one-line message and exit 130, not a traceback; then :func:`cgdbench.cli.main`."""
import os
import signal
import sys


def _stop(signum, frame):
    raise KeyboardInterrupt


def _interrupted(exc: BaseException) -> bool:
    """The exception is, or wraps, a KeyboardInterrupt (Python 3.11 re-raises one raised in a class body's
    ``__set_name__`` — a dataclass field being made — as ``RuntimeError`` caused by it)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def main() -> int:
    old = signal.signal(signal.SIGTERM, _stop)
    try:
        from .cli import main as cli_main
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        print("cgdbench: interrupted while starting; nothing done", file=sys.stderr, flush=True)
        # exit now: finalizing half-imported extension modules could end the process by the signal instead
        os._exit(130)
    finally:
        signal.signal(signal.SIGTERM, old)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
