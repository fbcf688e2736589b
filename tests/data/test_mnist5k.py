import numpy as np

from catride_core.data.sources import read_source


def test_embedded_mnist5k_is_real_digits():
    source = read_source("mnist5k", None)
    assert source.images.shape == (5000, 1, 28, 28) and source.images.dtype == np.uint8
    assert (np.bincount(source.labels) == 500).all()
    # real digits: mostly black background, some full-white strokes
    assert source.images.mean() < 60 and source.images.max() == 255
    assert len(source.checksum) == 64
