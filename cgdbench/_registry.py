"""Shared parsing of ``NAME[:PARAMS]`` specs against a registry with aliases."""
from .errors import ConfigError, choices_error


def split_spec(what: str, spec, registry: dict, aliases: dict) -> tuple[str, str]:
    """Canonical name and raw parameter text; unknown names list the registered ones."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty {what} spec {spec!r}; choose one of: {', '.join(registry)}")
    name, _, params = spec.strip().partition(":")
    name = aliases.get(name.lower(), name.lower())
    if name not in registry:
        raise choices_error(what, spec, [e.name + (":" + e.params if e.params else "")
                                         for e in registry.values()])
    return name, params
