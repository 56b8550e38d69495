"""MAT files: find a numeric `[leads, samples]` matrix and read only its first samples.

MAT v4 (what PhysioNet writes: CinC 2017, CinC 2020/2021, WFDB `.mat` signal files) is
parsed here from one open file: the headers, then only the bytes of the window that is read
(one `read` for the usual `[leads, samples]` matrix, a memory map for a transposed one), so
an hours-long file costs only that window. MAT v5/v7 files are read whole by scipy and refused
above `MAX_WHOLE_READ_BYTES`. MAT v7.3 (HDF5) is not supported.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io
from scipy.io.matlab import matfile_version

from ecg_assets.core.records import RecordReadError

# A MAT v5 file is read whole: refuse variables (and files) larger than this, so memory stays bounded.
MAX_WHOLE_READ_BYTES = 256 * 2**20
_V4_DTYPES = {0: "f8", 1: "f4", 2: "i4", 3: "i2", 4: "u2", 5: "u1"}  # the P digit of a MAT v4 type code
_V4_KINDS = {0: "numeric", 1: "text", 2: "sparse"}  # the T digit
_V5_NUMERIC = {"double", "single", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


@dataclass(frozen=True)
class Mat4Matrix:
    """Where one MAT v4 matrix lies in its file: column-major data of `rows x cols` at `data_offset`."""

    name: str
    rows: int
    cols: int
    dtype: np.dtype
    data_offset: int
    kind: str  # numeric, text, sparse or complex


def mat_version(path: Path) -> int:
    """4, 5 or 7 (v7.3, HDF5); raises `RecordReadError` for a file that is not a MAT file."""
    try:
        with path.open("rb") as handle:
            return _version(handle, path.name)
    except OSError as error:
        raise RecordReadError(f"{path.name} is not a MAT file ({error})") from error


def _version(handle: BinaryIO, name: str) -> int:
    """`mat_version` of an open file (left at its start). MAT v4 is told by a zero among the first
    four bytes, without scipy; everything else is scipy's judgement."""
    head = handle.read(4)
    handle.seek(0)
    if len(head) == 4 and 0 in head and any(head):
        return 4
    try:
        major, _ = matfile_version(handle)
    except Exception as error:
        raise RecordReadError(f"{name} is not a MAT file ({error})") from error
    return {0: 4, 1: 5, 2: 7}.get(major, major)


def mat4_matrices(path: Path) -> list[Mat4Matrix]:
    """Every matrix of a MAT v4 file, from the headers alone (no data is read)."""
    with path.open("rb") as handle:
        return _mat4_matrices(handle, os.fstat(handle.fileno()).st_size, path.name)


def _mat4_matrices(handle: BinaryIO, size: int, file_name: str) -> list[Mat4Matrix]:
    matrices: list[Mat4Matrix] = []
    offset = 0
    while offset + 20 <= size:
        handle.seek(offset)
        raw = handle.read(20)
        endian = "<" if 0 <= struct.unpack("<i", raw[:4])[0] < 1000 else ">"
        mopt, rows, cols, imagf, namlen = struct.unpack(f"{endian}5i", raw)
        precision, kind = (mopt % 100) // 10, mopt % 10
        if mopt // 1000 > 1 or precision not in _V4_DTYPES or kind > 2 or min(rows, cols) < 0 or namlen <= 0:
            raise RecordReadError(f"{file_name}: not a valid MAT v4 matrix header at byte {offset}")
        name = handle.read(namlen).split(b"\0")[0].decode("latin-1")
        dtype = np.dtype(_V4_DTYPES[precision]).newbyteorder(endian)
        data_offset = offset + 20 + namlen
        end = data_offset + rows * cols * dtype.itemsize * (2 if imagf else 1)
        if end > size:
            raise RecordReadError(f"{file_name} is truncated: matrix {name!r} needs {end} bytes, the file has {size}")
        matrices.append(Mat4Matrix(name, rows, cols, dtype, data_offset, "complex" if imagf else _V4_KINDS[kind]))
        offset = end
    return matrices


def read_mat_matrix(path: Path, variable: str, n_leads: int, max_samples: int | None) -> tuple[np.ndarray, int]:
    """The first `max_samples` columns of a `[n_leads, samples]` matrix (a `[samples, n_leads]` one is
    transposed), as float64, plus the full number of samples. Raises `RecordReadError` with the reason."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise RecordReadError(f"{path.name} is not a MAT file ({error})") from error
    with handle:
        version = _version(handle, path.name)
        if version == 7:
            raise RecordReadError(f"{path.name} is a MAT v7.3 (HDF5) file, which is not supported; save it as v7 or v4")
        if version == 4:
            return _read_mat4(path, handle, variable, n_leads, max_samples)
    return _read_mat5(path, variable, n_leads, max_samples)


def _read_mat4(
    path: Path, handle: BinaryIO, variable: str, n_leads: int, max_samples: int | None
) -> tuple[np.ndarray, int]:
    matrices = {matrix.name: matrix for matrix in _mat4_matrices(handle, os.fstat(handle.fileno()).st_size, path.name)}
    if variable not in matrices:
        raise RecordReadError(_missing_variable(path, variable, list(matrices)))
    matrix = matrices[variable]
    if matrix.kind != "numeric":
        raise RecordReadError(f"MAT variable {variable!r} in {path.name} is {matrix.kind}, not a numeric matrix")
    leads_are_rows = _leads_are_rows(path, variable, (matrix.rows, matrix.cols), n_leads)
    total = matrix.cols if leads_are_rows else matrix.rows
    window = total if max_samples is None else min(total, max_samples)
    if window == 0:
        return np.zeros((n_leads, 0)), total
    # Column-major data: C-ordered, shape (cols, rows), it is the matrix transposed. The first
    # `window` samples of leads stored as rows are one contiguous run of bytes: one read.
    if leads_are_rows:
        handle.seek(matrix.data_offset)
        data = np.frombuffer(handle.read(window * matrix.rows * matrix.dtype.itemsize), matrix.dtype)
        return np.array(data.reshape(window, matrix.rows).T, dtype=np.float64), total
    stored = np.memmap(path, dtype=matrix.dtype, mode="r", offset=matrix.data_offset, shape=(matrix.cols, matrix.rows))
    return np.array(stored[:, :window], dtype=np.float64), total


def _read_mat5(path: Path, variable: str, n_leads: int, max_samples: int | None) -> tuple[np.ndarray, int]:
    data = _mat5_matrix(path, variable)
    data = data if _leads_are_rows(path, variable, data.shape, n_leads) else data.T
    total = data.shape[1]
    return np.array(data[:, : total if max_samples is None else max_samples], dtype=np.float64), total


def _mat5_variables(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{name: (shape, MATLAB class)}` of a MAT v5 file, refused above `MAX_WHOLE_READ_BYTES`."""
    if path.stat().st_size > MAX_WHOLE_READ_BYTES:
        raise RecordReadError(_too_large(path, path.stat().st_size))
    try:
        return {name: (tuple(shape), kind) for name, shape, kind in scipy.io.whosmat(path)}
    except Exception as error:
        raise RecordReadError(f"unreadable MAT file {path.name}: {type(error).__name__}: {error}") from error


def _loadmat(path: Path, name: str) -> np.ndarray:
    try:
        return np.asarray(scipy.io.loadmat(path, variable_names=[name], struct_as_record=True)[name])
    except Exception as error:
        raise RecordReadError(f"unreadable MAT file {path.name}: {type(error).__name__}: {error}") from error


def _mat5_matrix(path: Path, variable: str) -> np.ndarray:
    """The numeric 2-D matrix `variable` names: a variable (`val`) or a struct field (`ECG.data`)."""
    top, *fields = variable.split(".")
    variables = _mat5_variables(path)
    if top not in variables:
        raise RecordReadError(_missing_variable(path, top, list(variables)))
    shape, kind = variables[top]
    if not fields:
        if kind not in _V5_NUMERIC:
            raise RecordReadError(f"MAT variable {variable!r} in {path.name} is a {kind}, not a numeric matrix")
        if len(shape) != 2:
            raise RecordReadError(f"MAT variable {variable!r} in {path.name} has shape {shape}, not a 2-D matrix")
        if int(np.prod(shape)) * 8 > MAX_WHOLE_READ_BYTES:
            raise RecordReadError(_too_large(path, int(np.prod(shape)) * 8))
        return _loadmat(path, top)
    if kind != "struct":
        raise RecordReadError(
            f"MAT variable {top!r} in {path.name} is a {kind}, not a struct with a field {fields[0]!r}"
        )
    data = struct_field(_loadmat(path, top), fields, path, top)
    if data.dtype.kind not in "iuf":
        what = "a struct" if data.dtype.names else ("text" if data.dtype.kind in "US" else str(data.dtype))
        raise RecordReadError(f"MAT variable {variable!r} in {path.name} is {what}, not a numeric matrix")
    if data.ndim != 2:
        raise RecordReadError(f"MAT variable {variable!r} in {path.name} has shape {data.shape}, not a 2-D matrix")
    return data


def struct_field(value: np.ndarray, fields: list[str], path: Path, name: str) -> np.ndarray:
    """`value.field1.field2...` of a single MAT struct (as scipy loads it: a 1 x 1 record array)."""
    for field in fields:
        if not value.dtype.names:
            raise RecordReadError(f"MAT variable {name!r} in {path.name} is not a struct: it has no field {field!r}")
        if value.size != 1:
            shape = " x ".join(map(str, value.shape))
            raise RecordReadError(f"MAT variable {name!r} in {path.name} is a {shape} struct array, not one struct")
        if field not in value.dtype.names:
            found = ", ".join(value.dtype.names)
            raise RecordReadError(f"MAT struct {name!r} in {path.name} has no field {field!r} (its fields: {found})")
        value = np.asarray(value.flat[0][field])
        name = f"{name}.{field}"
    return value


def mat_variable_classes(path: Path) -> dict[str, str]:
    """`{variable: MATLAB class}` of a MAT v4 or v5 file (`double`, `struct`, ...), from its headers only."""
    if mat_version(path) == 4:
        return {matrix.name: matrix.kind for matrix in mat4_matrices(path)}
    return {name: kind for name, (_, kind) in _mat5_variables(path).items()}


def read_mat_struct(path: Path, variable: str) -> dict[str, np.ndarray]:
    """Every field of the single struct `variable` of a MAT v5 file (read whole, size-limited), by name."""
    if mat_version(path) != 5:
        raise RecordReadError(f"{path.name} is a MAT v{mat_version(path)} file; a struct {variable!r} needs MAT v5")
    variables = _mat5_variables(path)
    if variable not in variables:
        raise RecordReadError(_missing_variable(path, variable, list(variables)))
    value = _loadmat(path, variable)
    if not value.dtype.names or value.size != 1:
        raise RecordReadError(f"MAT variable {variable!r} in {path.name} is not a single struct")
    return {field: np.asarray(value.flat[0][field]) for field in value.dtype.names}


def _leads_are_rows(path: Path, variable: str, shape: tuple[int, ...], n_leads: int) -> bool:
    if shape[0] == n_leads:
        return True
    if shape[1] == n_leads:
        return False
    raise RecordReadError(
        f"MAT variable {variable!r} in {path.name} has shape {tuple(shape)}, which does not hold {n_leads} lead(s)"
    )


def _missing_variable(path: Path, variable: str, present: list[str]) -> str:
    return f"MAT file {path.name} has no variable {variable!r} (it holds: {', '.join(present) or 'nothing'})"


def _too_large(path: Path, nbytes: int) -> str:
    return (
        f"MAT v5 file {path.name} would be read whole ({nbytes / 2**20:.0f} MiB, limit "
        f"{MAX_WHOLE_READ_BYTES / 2**20:.0f} MiB); save it as MAT v4 to read only the window needed"
    )
