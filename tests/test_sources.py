"""sources/: chunked readers agree with the whole-set load, hold memory to a chunk, and name bad data."""

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from xverify.errors import InputDataError, MissingDependencyError
from xverify.inputs import InputSpec
from xverify.sources import open_source

X = [InputSpec("x", (None, 3), "float32")]
TWO = [InputSpec("x", (None, 3), "float32"), InputSpec("ids", (None, 2), "int32")]
IMAGE = [InputSpec("image", (None, 8, 6, 3), "float32")]


def _all(source, batch, limit=None):
    chunks = list(source.chunks(batch, limit))
    assert all(len(next(iter(c.values()))) == batch for c in chunks[:-1])
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


@pytest.mark.parametrize("batch", [1, 4, 7, 100])
def test_npy_chunks_equal_the_whole_file(tmp_path, rng, batch):
    x = rng.standard_normal((23, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    source = open_source(tmp_path / "x.npy", X)
    assert source.samples == 23
    np.testing.assert_array_equal(_all(source, batch)["x"], x)
    np.testing.assert_array_equal(_all(source, batch, limit=10)["x"], x[:10])


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_members_stream_in_step(tmp_path, rng, save):
    x = rng.standard_normal((30, 3)).astype(np.float32)
    ids = rng.integers(0, 9, (30, 2)).astype(np.int64)
    save(tmp_path / "in.npz", x=x, ids=ids)
    got = _all(open_source(tmp_path / "in.npz", TWO), 8)
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["ids"], ids)
    assert got["ids"].dtype == np.int32  # cast to the model's dtype


def test_shards_run_across_boundaries_in_sorted_order(tmp_path, rng):
    x = rng.standard_normal((23, 3)).astype(np.float32)
    np.save(tmp_path / "part-2.npy", x[7:12])
    np.save(tmp_path / "part-1.npy", x[:7])
    np.savez(tmp_path / "part-3.npz", x=x[12:])
    source = open_source(tmp_path, X)
    assert source.samples == 23
    np.testing.assert_array_equal(_all(source, 4)["x"], x)


def test_shards_of_other_shapes_are_named(tmp_path):
    spec = [InputSpec("x", (None, None), "float32")]
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(InputDataError, match=r"b\.npy: samples of shape .*first shard a\.npy"):
        open_source(tmp_path, spec)


def test_iterating_a_200_mb_npy_keeps_memory_to_a_chunk(tmp_path):
    path = tmp_path / "big.npy"
    rows, batch = 200 * 2**20 // (4 * 256), 512
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 256))
    for start in range(0, rows, 8192):
        big[start : start + 8192] = start
    del big
    spec = [InputSpec("x", (None, 256), "float32")]
    chunk_bytes = batch * 256 * 4
    source = open_source(path, spec)
    resident = _resident_bytes()
    tracemalloc.start()
    seen = 0
    for chunk in source.chunks(batch):
        seen += len(chunk["x"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seen == rows
    assert peak < 3 * chunk_bytes  # 512 KiB chunks of a 200 MiB file
    if resident is not None:  # the map's pages are handed back as they are read (Linux)
        assert _resident_bytes() - resident < 50 * 2**20


def _resident_bytes():
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def _images(folder, rng, count, suffix=".png"):
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        size = (int(rng.integers(5, 20)), int(rng.integers(5, 20)))
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}{suffix}")


def _decode_whole(folder):
    from PIL import Image

    return np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((6, 8), Image.Resampling.BILINEAR), np.float32)
            for f in sorted(folder.iterdir())
        ]
    )


def test_image_folder_chunks_equal_decoding_every_image(tmp_path, rng):
    pytest.importorskip("PIL")
    _images(tmp_path / "imgs", rng, 50)
    source = open_source(tmp_path / "imgs", IMAGE)
    assert source.samples == 50
    got = _all(source, 16)["image"]
    assert got.shape == (50, 8, 6, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, _decode_whole(tmp_path / "imgs"))
    scaled = _all(open_source(tmp_path / "imgs", IMAGE, preprocess=lambda x: x / 127.5 - 1), 16)
    np.testing.assert_allclose(scaled["image"], got / 127.5 - 1, rtol=1e-6)


def test_corrupt_image_is_named(tmp_path, rng):
    pytest.importorskip("PIL")
    _images(tmp_path / "imgs", rng, 3, ".jpg")
    (tmp_path / "imgs" / "img001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(InputDataError, match=r"img001\.jpg: cannot decode it as an image"):
        list(open_source(tmp_path / "imgs", IMAGE).chunks(2))


def test_image_folder_needs_a_channels_last_input(tmp_path, rng):
    pytest.importorskip("PIL")
    _images(tmp_path / "imgs", rng, 2)
    with pytest.raises(InputDataError, match=r"shape \(N, H, W, C\)"):
        open_source(tmp_path / "imgs", [InputSpec("image", (None, 3, 8, 8), "float32")])


def _table(rng, rows):
    pa = pytest.importorskip("pyarrow")
    x = rng.standard_normal((rows, 3)).astype(np.float32)
    ids = rng.integers(0, 9, (rows, 2))
    return x, ids, pa


def test_parquet_list_columns_stream_in_batches(tmp_path, rng):
    x, ids, pa = _table(rng, 10_000)
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 3),
            "ids": pa.array(list(ids)),
            "label": pa.array(np.arange(10_000)),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3000)
    source = open_source(tmp_path / "t.parquet", TWO)
    assert source.samples == 10_000
    got = _all(source, 256)
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["ids"], ids)


def test_csv_split_columns(tmp_path, rng):
    x, ids, _ = _table(rng, 500)
    header = "x_0,x_1,x_2,ids_0,ids_1"
    np.savetxt(tmp_path / "t.csv", np.hstack([x, ids]), delimiter=",", header=header, comments="", fmt="%.9g")
    got = _all(open_source(tmp_path / "t.csv", TWO), 64)
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["ids"], ids)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("y_0,y_1,y_2\n1,2,3\n", r"no column for input 'x'.*x_0\.\.x_2, found \['y_0'"),
        ("x_0,x_1,x_2,ids_0,ids_1\n1,2,3,1,nan\n", r"'ids' expects integers"),
        ("x_0,x_1,x_2,ids_0,ids_1\n1,2,3,1,2\n1,,3,1,2\n", r"column 'x_1' is empty at row 1"),
    ],
)
def test_bad_tables_are_named(tmp_path, text, message):
    pytest.importorskip("pyarrow")
    (tmp_path / "t.csv").write_text(text)
    specs = X if text.startswith("y") else TWO
    with pytest.raises(InputDataError, match=message):
        list(open_source(tmp_path / "t.csv", specs).chunks(4))


def test_missing_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("x_0,x_1,x_2\n1,2,3\n")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'xverify\[tables\]'"):
        open_source(tmp_path / "t.csv", X)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "absent.npy", "no such inputs file or folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "found no .npy"),
        (lambda p: (p / "x.txt").write_text("1") and p / "x.txt", "unknown inputs format '.txt'"),
    ],
)
def test_paths_that_are_no_source(tmp_path, make, message):
    with pytest.raises(InputDataError, match=message):
        open_source(make(tmp_path), X)


def test_pickled_and_truncated_arrays_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="Python objects"):
        open_source(tmp_path / "obj.npy", X)
    np.savez(tmp_path / "in.npz", x=np.zeros((50, 3), np.float32))
    data = (tmp_path / "in.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError, match=r"cut\.npz: cannot read"):
        list(open_source(tmp_path / "cut.npz", X).chunks(8))


def test_preprocess_names_a_keras_application_function(tmp_path, rng):
    pytest.importorskip("PIL")
    keras = pytest.importorskip("keras")
    from xverify.sources.images import preprocess_function

    assert preprocess_function("none") is None and preprocess_function(None) is None
    function = preprocess_function("keras.applications.mobilenet_v2.preprocess_input")
    assert function is keras.applications.mobilenet_v2.preprocess_input
    _images(tmp_path / "imgs", rng, 4)
    got = _all(open_source(tmp_path / "imgs", IMAGE, preprocess=function), 3)["image"]
    np.testing.assert_allclose(got, _decode_whole(tmp_path / "imgs") / 127.5 - 1, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("os.system", "expected 'none' or a function under keras.applications."),
        ("keras.applications.nonesuch.preprocess_input", "no such function"),
    ],
)
def test_preprocess_refuses_other_names(name, message):
    from xverify.errors import UsageError
    from xverify.sources.images import preprocess_function

    if "keras" in name:
        pytest.importorskip("keras")
    with pytest.raises(UsageError, match=message):
        preprocess_function(name)
