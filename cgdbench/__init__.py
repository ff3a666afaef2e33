"""cgdbench: Numba-compiled compressed gradient methods and their benchmarks.

>>> from cgdbench import RunConfig, run
>>> trace = run(RunConfig(algorithm="det-cgd1", compressor="rand-1", stepsize="diag-inv", iters=100))

The names below are imported on first use (PEP 562), so ``import cgdbench`` itself is instant:
the command line installs its Ctrl-C handling before Numba and the kernels load (``_console``).
"""
__version__ = "0.1.0"

_EXPORTS = {"RunConfig": "config", "Trace": "engine", "run": "engine", "build": "engine",
            "CgdbenchError": "errors", "ConfigError": "errors", "DataError": "errors", "StoreError": "errors"}

__all__ = ["RunConfig", "Trace", "run", "build", "CgdbenchError", "ConfigError", "DataError",
           "StoreError", "__version__"]


def __getattr__(name):
    import importlib
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")  # a submodule: cgdbench.engine, ...
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
