"""The ``cgdbench`` console script: Ctrl-C or SIGTERM while the package loads (Numba, the kernels: about
half a second) is a one-line message and exit 130, not a traceback; then :func:`cgdbench.cli.main`."""
import os
import signal
import sys


def _stop(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    old = signal.signal(signal.SIGTERM, _stop)
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("cgdbench: interrupted while starting; nothing done", file=sys.stderr, flush=True)
        # exit now: finalizing half-imported extension modules could end the process by the signal instead
        os._exit(130)
    finally:
        signal.signal(signal.SIGTERM, old)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
