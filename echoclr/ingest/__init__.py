"""Ingest: manifests and dataset adapters, decoding, the paper's preprocessing, parallel resumable store writes."""

from echoclr.ingest.adapters import detect_layout, dicom_tree_rows, echonet_rows, rows_for
from echoclr.ingest.decode import DecodedVideo, DecodeError, decode_file
from echoclr.ingest.echonet_lvh import DEFAULT_LVH_THRESHOLD_CM, echonet_lvh_rows, lvh_label
from echoclr.ingest.label_join import LabelJoin, join_labels
from echoclr.ingest.manifest import ManifestError, ManifestRow, assign_splits, read_manifest, validate_rows
from echoclr.ingest.preprocess import preprocess_frames, sector_mask, to_gray
from echoclr.ingest.mimic_echo import mimic_echo_rows
from echoclr.ingest.runner import REPORT_NAME, STILL_IMAGE, Failure, IngestResult, ingest_one, ingest_rows, ingest_study
from echoclr.ingest.view_filter import ViewFilter, ViewModelError, load_view_classifier

__all__ = [
    "DEFAULT_LVH_THRESHOLD_CM",
    "DecodeError",
    "DecodedVideo",
    "Failure",
    "IngestResult",
    "LabelJoin",
    "ManifestError",
    "ManifestRow",
    "REPORT_NAME",
    "STILL_IMAGE",
    "ViewFilter",
    "ViewModelError",
    "assign_splits",
    "decode_file",
    "detect_layout",
    "dicom_tree_rows",
    "echonet_lvh_rows",
    "echonet_rows",
    "ingest_one",
    "ingest_rows",
    "join_labels",
    "load_view_classifier",
    "lvh_label",
    "mimic_echo_rows",
    "ingest_study",
    "preprocess_frames",
    "read_manifest",
    "rows_for",
    "sector_mask",
    "to_gray",
    "validate_rows",
]
