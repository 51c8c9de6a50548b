import numpy as np
import pytest

from nce.cli._table import InputError, read_table


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_header_and_values(tmp_path):
    table = read_table(_write(tmp_path, "a,b\n1,2\n3.5,-4e-3\n"))
    assert table.columns == ["a", "b"]
    np.testing.assert_array_equal(table.values, [[1, 2], [3.5, -4e-3]])
    np.testing.assert_array_equal(table.select(["b"], "--y-cols"), [[2], [-4e-3]])


def test_no_header_names_columns(tmp_path):
    table = read_table(_write(tmp_path, "1,2\n3,4\n"))
    assert table.columns == ["x0", "x1"]


def test_npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6.0).reshape(3, 2))
    assert read_table(path).values.shape == (3, 2)


@pytest.mark.parametrize(
    "text,message",
    [
        ("a,b\n1,2\n3\n", r"row 3 has 1 cells but the table has 2"),
        ("a,b\n1,2\n3,x\n", r"row 3, b: 'x' is not a number"),
        ("a,b\n1,nan\n", r"row 2, b: 'nan' is not finite"),
        ("a,b\n", "header but no data rows"),
        ("", "no rows"),
        ("a,a\n1,2\n", "repeats a column name"),
    ],
)
def test_bad_tables_name_file_row_and_column(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_missing_file_unknown_column_and_binary(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    table = read_table(_write(tmp_path, "a,b\n1,2\n"))
    with pytest.raises(InputError, match=r"--x-cols: no column 'c'"):
        table.select(["c"], "--x-cols")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_table(binary)
