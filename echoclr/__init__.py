"""echoclr: self-supervised contrastive learning on echocardiogram videos.

The top-level import is light: it never imports torch, DALI or the compiled
extension. Import the subpackages for the real work::

    from echoclr.store import open_store
    from echoclr.ingest import ingest_rows, read_manifest
"""

from echoclr._version import __version__

__all__ = ["__version__"]
