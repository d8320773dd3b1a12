"""Data: sources -> dataset -> split. ``load_dataset`` reads every supported format."""

from .dataset import ImageDataset, LazyImages
from .download import download_file
from .options import DataOptions, load_and_split, record_split, saved_options, split_summary
from .registry import NAMED, default_data_dir, download, load_dataset
from .split import Split, find_leakage, load_manifest, make_split, save_manifest, subsample

__all__ = ["DataOptions", "ImageDataset", "LazyImages", "NAMED", "Split", "load_and_split", "record_split",
           "saved_options", "split_summary", "default_data_dir", "download", "download_file",
           "find_leakage", "load_dataset", "load_manifest", "make_split", "save_manifest", "subsample"]
