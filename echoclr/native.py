"""Access to the compiled extension (``echoclr._native``), failing loudly only at use."""

from __future__ import annotations

from types import ModuleType

_IMPORT_ERROR: ImportError | None = None
try:
    from echoclr import _native as _native_module
except ImportError as exc:  # pragma: no cover - exercised only in broken installs
    _native_module = None
    _IMPORT_ERROR = exc


def native() -> ModuleType:
    """Return the compiled ``echoclr._native`` module.

    Raises:
        ImportError: the extension was not built; the message says how to build it.
    """
    if _native_module is None:
        raise ImportError(
            "echoclr's compiled extension (echoclr._native) is not available "
            f"({_IMPORT_ERROR}). Reinstall from source with a C++17 compiler: "
            "`pip install -e .` (or `make test`, which builds it)."
        )
    return _native_module
