"""What ``--overwrite`` may delete: only a folder the command recognises as its own, never a folder that holds the
user's working directory, their home or ``/``.

Every command that deletes a folder calls :func:`remove_owned_folder`; commands that write named files into a
folder call :func:`refuse_existing` first.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from echoclr.errors import UsageError

__all__ = ["check_deletable", "refuse_existing", "remove_owned_folder"]


class OverwriteRefusedError(UsageError, FileExistsError):
    """``--overwrite`` was asked to delete a folder that is not the command's own, or a protected folder."""


def check_deletable(path: str | Path) -> Path:
    """Refuse to delete ``/``, the home folder, the current folder or any folder above it.

    Args:
        path: the folder about to be deleted.

    Returns:
        ``path`` resolved (symlinks followed).

    Raises:
        OverwriteRefusedError: ``path`` is protected; the message names it.
    """
    resolved = Path(path).expanduser().resolve()
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved == home or resolved == cwd or resolved in cwd.parents:
        raise OverwriteRefusedError(
            f"refusing to delete {resolved}: it is / , the home folder or holds the current folder ({cwd}); "
            "choose a dedicated output folder"
        )
    return resolved


def remove_owned_folder(path: str | Path, *, owned: bool, what: str, sign: str) -> bool:
    """Delete the folder ``path`` for ``--overwrite``, but only if the command recognised it as its own.

    An empty or missing folder needs no deleting. A non-empty one is deleted only when ``owned`` (the caller found
    its ``sign``, e.g. a demo marker or a run config) and it is not protected (:func:`check_deletable`).

    Args:
        path: the output folder.
        owned: whether the folder carries the command's sign.
        what: what the command makes there, for the message (``"a demo folder"``).
        sign: the file that marks it, for the message (``"echoclr_demo.json"``).

    Returns:
        True when something was deleted.

    Raises:
        OverwriteRefusedError: the folder is not the command's own or is protected; nothing was deleted.
    """
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return False
    if not path.is_dir():
        raise OverwriteRefusedError(f"{path} is a file, not {what}: --overwrite deletes only {what}")
    if not owned:
        raise OverwriteRefusedError(
            f"{path} is not empty and is not {what} (no {sign}): --overwrite deletes only {what}; "
            "choose another --out or empty the folder yourself"
        )
    shutil.rmtree(check_deletable(path))
    return True


def refuse_existing(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Refuse to replace files that already exist unless ``overwrite``.

    Raises:
        OverwriteRefusedError: some of ``paths`` exist and ``overwrite`` is False; the message lists them.
    """
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise OverwriteRefusedError(f"{shown} already exist: pass --overwrite to replace them or choose another --out")
