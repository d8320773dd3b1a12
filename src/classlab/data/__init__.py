"""Data: sources -> dataset -> split. ``load_dataset`` reads every supported format."""

from .dataset import ImageDataset, LazyImages
from .download import download_file
from .registry import NAMED, default_data_dir, download, load_dataset
from .split import Split, find_leakage, load_manifest, make_split, save_manifest, subsample

__all__ = ["ImageDataset", "LazyImages", "NAMED", "Split", "default_data_dir", "download", "download_file",
           "find_leakage", "load_dataset", "load_manifest", "make_split", "save_manifest", "subsample"]
