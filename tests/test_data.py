"""Datasets: manifest vs shared files, reader, label mapping, lookups and their errors."""
import shutil

import numpy as np
import pytest

from cgdbench import data
from cgdbench.errors import DataError


def test_manifest_hashes_and_shapes_match_the_shared_files(data_dir):
    for name, entry in data.manifest().items():
        path = data_dir / entry["file"]
        assert data.sha256_of(path) == entry["sha256"], name
        ds = data.load(name, data_dir=data_dir)
        assert ds.A.shape == (entry["rows"], entry["features"]), name
        assert ds.A.nnz == entry["nnz"], name
        assert set(np.unique(ds.b)) <= {-1.0, 1.0}


def test_a1a_has_123_features_although_the_file_stops_at_119(data_dir):
    ds = data.load("a1a", data_dir=data_dir)
    assert ds.A.shape == (1605, 123)
    assert ds.A.indices.max() == 118
    assert int((ds.b > 0).sum()) == 395


@pytest.mark.parametrize("name,positives", [("mushrooms", 4208), ("phishing", 6157)])
def test_labels_mapped_to_pm1(data_dir, name, positives):
    ds = data.load(name, data_dir=data_dir)
    assert int((ds.b > 0).sum()) == positives


def test_lookup_order_env_and_flag(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("CGDBENCH_DATA", str(data_dir))
    assert data.load("a1a").source == str(data_dir / "a1a")
    with pytest.raises(DataError) as e:
        data.load("a1a", data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "a1a") in msg and "--data-dir" in msg and "CGDBENCH_DATA" in msg


def test_by_path_and_hash_mismatch(data_dir, tmp_path):
    ds = data.load(str(data_dir / "a1a"))
    assert ds.name == "a1a" and ds.A.shape == (1605, 123)
    mod = tmp_path / "a1a"
    text = (data_dir / "a1a").read_text().splitlines(keepends=True)
    mod.write_text("".join(text[:-1]) + text[-1].replace("-1", "+1", 1))
    with pytest.raises(DataError) as e:
        data.load(str(mod))
    assert data.manifest()["a1a"]["sha256"] in str(e.value) and data.sha256_of(mod) in str(e.value)
    assert "--allow-hash-mismatch" in str(e.value)
    assert data.load(str(mod), allow_hash_mismatch=True).A.shape == (1605, 123)


def test_truncated_file(data_dir, tmp_path):
    lines = (data_dir / "a1a").read_text().splitlines(keepends=True)
    (tmp_path / "a1a").write_text("".join(lines[:1000]))
    with pytest.raises(DataError, match="sha256 mismatch"):
        data.load("a1a", data_dir=tmp_path)
    with pytest.raises(DataError, match="1000 rows.*truncated"):
        data.load("a1a", data_dir=tmp_path, allow_hash_mismatch=True)
    # cut in the middle of a line
    (tmp_path / "cut").write_text("".join(lines[:10]) + "-1 3:1 11:")
    with pytest.raises(DataError, match="line 11"):
        data.load(str(tmp_path / "cut"))
    # cut inside an index:value pair ("4" alone does not parse): the message says why, not the parser's words
    (tmp_path / "cut2").write_text("".join(lines[:10]) + "-1 2:1 6:1 4")
    with pytest.raises(DataError, match="line 11.*its last line is incomplete: the file looks truncated"):
        data.load(str(tmp_path / "cut2"))
    # a bad last line of a complete file (it ends with a newline) is not called truncated
    (tmp_path / "typo").write_text("".join(lines[:10]) + "-1 2:1 3:x\n")
    with pytest.raises(DataError, match="line 11") as err:
        data.load(str(tmp_path / "typo"))
    assert "looks truncated" not in str(err.value)  # (the tmp path itself says "truncated")


def test_malformed_file_names_the_line(tmp_path):
    f = tmp_path / "bad.svm"
    f.write_text("+1 1:0.5 3:1\n-1 2:1\n+1 2:x 4:1\n")
    with pytest.raises(DataError, match="line 3"):
        data.load(str(f))
    f.write_text("+1 1:0.5\n-1 0:1\n")
    with pytest.raises(DataError, match="line 2"):
        data.load(str(f))


def test_unknown_and_missing(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nosuch'.*a1a"):
        data.load("nosuch")
    with pytest.raises(DataError, match="does not exist"):
        data.load(str(tmp_path / "nofile"))


def test_unlisted_file_infers_features_and_maps_labels(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("0 1:1 4:2\n1 2:1\n0 3:1\n")
    ds = data.load(str(f))
    assert ds.A.shape == (3, 4)
    np.testing.assert_array_equal(ds.b, [-1, 1, -1])
    f.write_text("0 1:1\n1 2:1\n2 3:1\n")
    with pytest.raises(DataError, match="3 label values"):
        data.load(str(f))
    f.write_text("+1 1:1\n+1 2:1\n")  # one class: loaded, with a warning runs carry
    assert data.load(str(f)).label_note.startswith("every row has label 1: a one-class problem")


def test_synthetic_default_is_shaped_like_a1a():
    ds = data.load(None)
    m, d = ds.A.shape
    assert (m, d) == (1605, 123)
    assert np.all(np.diff(ds.A.indptr) == 14)
    assert set(np.unique(ds.A.data)) == {1.0}
    assert 0.2 < np.mean(ds.b > 0) < 0.3
    again = data.load("synthetic")
    assert (again.A != ds.A).nnz == 0 and np.array_equal(again.b, ds.b)


def test_copy_is_found_in_a_data_dir(data_dir, tmp_path):
    shutil.copy(data_dir / "phishing", tmp_path / "phishing")
    assert data.load("phishing", data_dir=tmp_path).A.shape == (11055, 68)


def test_datasets_add_links_and_never_deletes_the_source(tmp_path, monkeypatch):
    import shutil
    from cgdbench import data
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(data.locate("a1a"), src / "a1a")
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "default_data_dir", lambda: cache)
    assert data.add(src) == [("a1a", f"linked {src / 'a1a'} -> {cache / 'a1a'}")]
    assert (cache / "a1a").is_symlink() and (src / "a1a").is_file()
    # adding the cache directory to itself keeps the file
    assert data.add(cache)[0][1].startswith("already in the cache directory")
    assert (cache / "a1a").resolve() == (src / "a1a").resolve() and (src / "a1a").stat().st_size > 0
    monkeypatch.delenv("CGDBENCH_DATA")
    assert data.locate("a1a") == cache / "a1a"
    with pytest.raises(data.DataError, match="no file of the manifest"):
        data.add(tmp_path)


def test_datasets_add_links_mnist_with_its_labels(data_dir, tmp_path, monkeypatch):
    from cgdbench import data
    from cgdbench.problems import MLPClassifier
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "default_data_dir", lambda: cache)
    done = dict(data.add(data_dir))
    assert done["mnist (t10k-images-idx3-ubyte.gz)"].startswith("linked")
    assert done["mnist (t10k-labels-idx1-ubyte.gz)"].startswith("linked")
    monkeypatch.delenv("CGDBENCH_DATA", raising=False)
    p = MLPClassifier.create(dataset="mnist")          # found in the cache directory, labels beside the images
    assert p.widths[0] == 784 and p.m == 8000
