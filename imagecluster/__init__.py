"""imagecluster: group photos by content."""

__version__ = "0.1.0"

from ._exceptions import (
    ImageClusterError,
    InvalidParameter,
    LibraryNotFound,
    ModelError,
    NotAnImage,
    NotOurTree,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    TreeError,
)
from .cluster import DEFAULT_SIM
from .images import find_images, load_image
from .models import load_model
from .store import Store
from .tree import write_tree

__all__ = [
    "DEFAULT_SIM",
    "ImageClusterError",
    "InvalidParameter",
    "LibraryNotFound",
    "ModelError",
    "NotAnImage",
    "NotOurTree",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "TreeError",
    "__version__",
    "cluster",
    "find_images",
    "load_image",
    "load_model",
    "write_tree",
]
