import numpy as np
import torch

from spx.workers import digits


def _same(a, b):
    return all(torch.equal(x.x, y.x) and torch.equal(x.y, y.y) for x, y in zip(a, b, strict=True))


def test_a_data_folder_caches_the_digits_and_a_torn_cache_is_rebuilt(tmp_path):
    plain = digits.load()
    cached = digits.load(tmp_path)
    assert (tmp_path / digits.CACHE).is_file()
    assert _same(plain, cached)
    assert [len(s.y) for s in cached] == [1438, 359]

    digits.load.cache_clear()  # a fresh worker process: reads the file
    with np.load(tmp_path / digits.CACHE) as f:
        assert f["pixels"].shape == (1797, 64) and int(f["pixels"].max()) == 16
    assert _same(plain, digits.load(tmp_path))

    (tmp_path / digits.CACHE).write_bytes(b"half a file")  # a crash mid-write elsewhere
    digits.load.cache_clear()
    assert _same(plain, digits.load(tmp_path))
    with np.load(tmp_path / digits.CACHE) as f:
        assert f["labels"].shape == (1797,)
    assert not list(tmp_path.glob("*.tmp-*"))
