"""Datasets: IDX parsing (:mod:`.idx`), the catalogue (:mod:`.catalogue`), fetching (:mod:`.sources`), loading
(:mod:`.load`).

Everything a caller needs is importable from ``dim.data`` itself.
"""
from .catalogue import (DATASETS, SPLIT_FILES, Dataset, DatasetSpec, dataset_dir, default_data_dir, folder_spec,
                        get_spec)
from .idx import DataError, parse_idx, read_idx, sha256_bytes
from .load import checksums, load_split
from .sources import SOURCES, fetch, is_complete

__all__ = ["DATASETS", "SPLIT_FILES", "SOURCES", "DataError", "Dataset", "DatasetSpec", "checksums", "dataset_dir",
           "default_data_dir", "fetch", "folder_spec", "get_spec", "is_complete", "load_split", "parse_idx",
           "read_idx", "sha256_bytes"]
