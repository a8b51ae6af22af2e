"""inputs.py: synthetic inputs, file loaders and their errors."""

import numpy as np
import pytest

from xverify.errors import InputDataError, UsageError
from xverify.inputs import InputSpec, fit_inputs, load_inputs, synthetic

X = [InputSpec("x", (None, 3), "float32")]
TOKENS = [InputSpec("tokens", (None, 12), "int32", high=100)]


def test_synthetic_is_seeded_and_shaped():
    a, b = synthetic(X, 5, seed=3), synthetic(X, 5, seed=3)
    assert a["x"].shape == (5, 3) and a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], synthetic(X, 5, seed=4)["x"])


def test_embedding_indices_stay_below_vocabulary():
    t = synthetic(TOKENS, 64, seed=0)["tokens"]
    assert t.dtype == np.int32 and t.min() >= 0 and t.max() < 100 and t.max() > 50


def test_embedding_bound_read_from_onnx(example_models):
    from xverify.inputs import input_specs

    spec = input_specs(example_models.onnx("text_lstm"))[0]
    assert spec.name == "tokens" and spec.high == 100


@pytest.mark.parametrize("samples", [0, -3])
def test_samples_must_be_positive(samples):
    with pytest.raises(UsageError, match="positive"):
        synthetic(X, samples)


def test_npz_npy_csv_round_trip(tmp_path, rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    np.save(tmp_path / "in.npy", x)
    np.savetxt(tmp_path / "in.csv", x, delimiter=",")
    for name in ("in.npz", "in.npy"):
        np.testing.assert_array_equal(load_inputs(tmp_path / name, X)["x"], x)
    np.testing.assert_allclose(load_inputs(tmp_path / "in.csv", X)["x"], x, rtol=1e-6)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="pickled"):
        load_inputs(tmp_path / "obj.npy", X)


def test_wrong_names_and_shapes_are_named(tmp_path):
    np.savez(tmp_path / "bad.npz", y=np.zeros((2, 3), np.float32), z=np.zeros(2))
    with pytest.raises(InputDataError, match=r"expects \['x'\]"):
        load_inputs(tmp_path / "bad.npz", X)
    with pytest.raises(InputDataError, match=r"shape \(2, 4\).*\('N', 3\)"):
        fit_inputs({"x": np.zeros((2, 4))}, X, "f")


def test_indices_out_of_vocabulary_are_refused():
    with pytest.raises(InputDataError, match="100 rows"):
        fit_inputs({"tokens": np.full((1, 12), 100)}, TOKENS, "f")
    with pytest.raises(InputDataError, match="non-integer"):
        fit_inputs({"tokens": np.full((1, 12), 1.5)}, TOKENS, "f")


def test_one_dimensional_column_for_one_feature():
    feeds = fit_inputs({"x": np.arange(5.0)}, [InputSpec("x", (None, 1), "float32")], "f")
    assert feeds["x"].shape == (5, 1) and feeds["x"].dtype == np.float32


def test_folders_tables_and_headed_csv_go_through_sources(tmp_path, rng):
    x = rng.standard_normal((40, 3)).astype(np.float32)
    (tmp_path / "shards").mkdir()
    np.save(tmp_path / "shards" / "a.npy", x[:25])
    np.save(tmp_path / "shards" / "b.npy", x[25:])
    np.savetxt(tmp_path / "t.csv", x, delimiter=",", header="x_0,x_1,x_2", comments="", fmt="%.9g")
    for name in ("shards", "t.csv"):
        np.testing.assert_array_equal(load_inputs(tmp_path / name, X)["x"], x)
        np.testing.assert_array_equal(load_inputs(tmp_path / name, X, limit=30)["x"], x[:30])
    np.testing.assert_array_equal(load_inputs(tmp_path / "shards", X, limit=30)["x"], x[:30])


def test_parquet_table_is_loaded(tmp_path, rng):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x = rng.standard_normal((12, 3)).astype(np.float32)
    pq.write_table(pa.table({"x": list(x)}), tmp_path / "t.parquet")
    np.testing.assert_array_equal(load_inputs(tmp_path / "t.parquet", X)["x"], x)


def test_streamed_source_respects_the_budget(tmp_path):
    from xverify.budget import Budget
    from xverify.errors import ResourceLimitError

    (tmp_path / "shards").mkdir()
    np.save(tmp_path / "shards" / "a.npy", np.zeros((1000, 3), np.float32))
    with pytest.raises(ResourceLimitError, match="shards"):
        load_inputs(tmp_path / "shards", X, Budget(1000))
