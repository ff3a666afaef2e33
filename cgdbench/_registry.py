"""The one registry mechanism (name, aliases, parameters, doc, traits, factory) and ``NAME[:PARAMS]`` parsing."""
from collections.abc import Mapping

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


class Entry:
    """One registered thing: its name, aliases, parameter syntax, doc line, traits and factory."""

    __slots__ = ("name", "aliases", "params", "doc", "traits", "factory")

    def __init__(self, name, aliases, params, doc, traits, factory):
        self.name, self.aliases, self.params, self.doc = name, tuple(aliases), params, doc
        self.traits, self.factory = dict(traits), factory

    def __getattr__(self, key):
        try:
            return self.traits[key]
        except KeyError:
            raise AttributeError(f"{self.name!r} has no trait {key!r}") from None

    def __repr__(self):
        return f"Entry({self.name!r})"


class Registry(Mapping):
    """Name -> :class:`Entry`, filled by the :meth:`register` decorator on each factory (or by a call).

    Everything known about an entry (its traits) is declared where it is registered;
    callers ask the entry, never a side list of names.  A read-only mapping of canonical
    names to entries (iteration gives names, in registration order).
    """

    def __init__(self, what: str):
        self.what = what
        self.entries: dict[str, Entry] = {}
        self.aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases=(), params: str = "", doc: str = "", **traits):
        def deco(factory):
            taken = set(self.entries) | set(self.aliases)
            clash = [a for a in (name, *aliases) if a in taken] + [a for a in aliases if a == name]
            if clash or len(set(aliases)) != len(aliases):
                owners = sorted({getattr(self.entries[self.aliases.get(a, a)].factory, "__module__", "?")
                                 for a in clash if self.aliases.get(a, a) in self.entries})
                raise ValueError(f"{self.what} {name!r}: name or alias already registered: {clash or aliases}"
                                 + (f" (by {', '.join(owners)})" if owners else ""))
            self.entries[name] = Entry(name, aliases, params, doc, traits, factory)
            for a in aliases:
                self.aliases[a] = name
            return factory
        return deco

    # --- Mapping -----------------------------------------------------------------------
    def __getitem__(self, name) -> Entry:
        return self.entries[name]

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)

    # --- lookups -----------------------------------------------------------------------
    def canonical(self, name) -> str:
        key = str(name).strip().lower()
        key = self.aliases.get(key, key)
        if key not in self.entries:
            raise choices_error(self.what, name, self.entries)
        return key

    def get(self, name) -> Entry:  # noqa: D102  (Mapping.get semantics replaced: unknown names raise)
        return self.entries[self.canonical(name)]

    def find(self, name):
        """The entry of ``name`` (or an alias), or None for a name not registered (e.g. read from an old file)."""
        key = str(name).strip().lower() if name is not None else None
        return self.entries.get(self.aliases.get(key, key))

    def split(self, spec, what: str | None = None) -> tuple[str, str]:
        """``NAME[:PARAMS]`` -> (canonical name, raw parameter text); unknown names list the registered ones."""
        return split_spec(what or self.what, spec, self.entries, self.aliases)

    def names(self, **traits) -> list[str]:
        """Names whose traits equal ``traits`` (all of them)."""
        return [e.name for e in self.values() if all(e.traits.get(k) == v for k, v in traits.items())]

    def select(self, pred) -> list[str]:
        """Names of the entries ``pred(entry)`` accepts."""
        return [e.name for e in self.values() if pred(e)]

    def describe(self) -> list[tuple[str, str]]:
        """``(name[:PARAMS], doc line (aliases: ...))`` of every entry: what ``cgdbench list`` prints."""
        return [(e.name + (":" + e.params if e.params else ""), e.doc + alias_note(e)) for e in self.values()]


def alias_note(entry) -> str:
    return f" (aliases: {', '.join(repr(a) for a in entry.aliases)})" if entry.aliases else ""
