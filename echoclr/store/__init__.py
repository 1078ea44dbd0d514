"""The zarr v3 echo store: preprocessed videos, their index, labels and splits."""

from echoclr.store.echo_store import EchoStore, StoreError, open_store
from echoclr.store.index import StoreIndex
from echoclr.store.upgrade import upgrade_store
from echoclr.store.reader import ClipReader
from echoclr.store.schema import SCHEMA_NAME, SCHEMA_VERSION, SPLITS, PreprocessConfig, VideoRecord

__all__ = [
    "ClipReader",
    "EchoStore",
    "PreprocessConfig",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SPLITS",
    "StoreError",
    "StoreIndex",
    "VideoRecord",
    "open_store",
    "upgrade_store",
]
