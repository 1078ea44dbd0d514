"""Ingest: manifests and dataset adapters, decoding, the paper's preprocessing, parallel resumable store writes."""

from echoclr.ingest.adapters import dicom_tree_rows, echonet_rows, rows_for
from echoclr.ingest.decode import DecodedVideo, DecodeError, decode_file
from echoclr.ingest.manifest import ManifestError, ManifestRow, assign_splits, read_manifest, validate_rows
from echoclr.ingest.preprocess import preprocess_frames, sector_mask, to_gray
from echoclr.ingest.runner import REPORT_NAME, Failure, IngestResult, ingest_one, ingest_rows, ingest_study

__all__ = [
    "DecodeError",
    "DecodedVideo",
    "Failure",
    "IngestResult",
    "ManifestError",
    "ManifestRow",
    "REPORT_NAME",
    "assign_splits",
    "decode_file",
    "dicom_tree_rows",
    "echonet_rows",
    "ingest_one",
    "ingest_rows",
    "ingest_study",
    "preprocess_frames",
    "read_manifest",
    "rows_for",
    "sector_mask",
    "to_gray",
    "validate_rows",
]
