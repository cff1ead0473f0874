"""Datasets as .npz archives: read safely, describe, check against a train signature."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.runtime.signatures import SignatureSpec, dtype_name, numpy_dtype

_NUMERIC_KINDS = "fiub"
LABEL_NAMES = "label_names"  # the classes' names in label order (app bundles carry them)


def _count_members(data: bytes) -> int:
    """The number of members the zip's end-of-central-directory record declares: read before
    the directory itself, so an archive of a million members is refused without parsing it."""
    end = zipfile._EndRecData(io.BytesIO(data))  # type: ignore[attr-defined]
    if not end:
        raise InvalidInput("file is not an .npz archive (a zip of .npy arrays): no zip "
                           "directory found")
    return int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]


def read_npz(data: bytes, max_bytes: int | None = None,
             max_arrays: int | None = None) -> dict[str, np.ndarray[Any, Any]]:
    """Arrays of an .npz (no pickles, at most max_bytes unpacked and max_arrays members); 422
    naming what is wrong. Linear in the members: each is read once through its ZipInfo
    (numpy's NpzFile searches its name list on every access, quadratic in the arrays)."""
    try:
        if max_arrays is not None and (declared := _count_members(data)) > max_arrays:
            raise InvalidInput(f"the .npz holds {declared} arrays; the limit is {max_arrays}")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
            if max_arrays is not None and len(members) > max_arrays:  # the record can lie
                raise InvalidInput(f"the .npz holds {len(members)} arrays; the limit is "
                                   f"{max_arrays}")
            unpacked = sum(info.file_size for info in members)
            if max_bytes is not None and unpacked > max_bytes:  # small zips unpack to terabytes
                raise InvalidInput(f"the .npz unpacks to {unpacked} bytes; the limit is "
                                   f"{max_bytes}")
            arrays = {}
            for info in members:
                name = info.filename.removesuffix(".npy")
                if name in arrays:
                    raise InvalidInput(f"array '{name}' appears twice in the archive")
                arrays[name] = _read_member(zf, info, name)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InvalidInput(f"file is not an .npz archive (a zip of .npy arrays): {exc}") from None
    if not arrays:
        raise InvalidInput("the .npz archive holds no arrays")
    return arrays


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str
                 ) -> np.ndarray[Any, Any]:
    try:
        with zf.open(info) as member:
            if member.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                raise InvalidInput(f"archive member '{name}' is not an .npy array")
        with zf.open(info) as member:
            arr = np.lib.format.read_array(member, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, MemoryError,
            NotImplementedError) as exc:
        why = ("it holds Python objects, and pickles are refused"
               if "allow_pickle" in str(exc) else str(exc) or type(exc).__name__)
        raise InvalidInput(f"array '{name}' cannot be read: {why}") from None
    if not isinstance(arr, np.ndarray):
        raise InvalidInput(f"archive member '{name}' is not an .npy array")
    return arr


def describe(arrays: dict[str, np.ndarray[Any, Any]]) -> tuple[int, dict[str, Any]]:
    """Number of examples and {name: {shape, dtype}}; 422 unless the arrays line up."""
    sizes = {}
    for name, arr in arrays.items():
        if name == LABEL_NAMES and arr.ndim == 1 and arr.dtype.kind in "US":
            continue  # one name per class, not per example
        if arr.ndim == 0:
            raise InvalidInput(f"array '{name}' is a scalar; every array needs an example axis")
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise InvalidInput(f"array '{name}' has dtype {arr.dtype}; numbers or bools only")
        sizes[name] = arr.shape[0]
    if not sizes:
        raise InvalidInput(f"the dataset holds only '{LABEL_NAMES}'; it has no examples")
    if len(set(sizes.values())) != 1:
        raise InvalidInput(f"arrays differ in their first dimension: {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise InvalidInput("the dataset has no examples")
    meta = {name: {"shape": list(a.shape), "dtype": dtype_name(a.dtype)}
            for name, a in sorted(arrays.items())}
    return n, meta


def check_against(spec: SignatureSpec, arrays: dict[str, Any]) -> None:
    """422 naming the array unless the arrays (name -> {shape, dtype}) fit the signature."""
    missing = sorted(set(spec.inputs) - set(arrays))
    extra = sorted(set(arrays) - set(spec.inputs))
    if missing or extra:
        names = ", ".join(f"'{n}'" for n in spec.inputs)
        raise InvalidInput(
            f"dataset arrays must be named after the train inputs ({names}); "
            + "; ".join(p for p in (
                f"missing {', '.join(repr(m) for m in missing)}" if missing else "",
                f"unexpected {', '.join(repr(e) for e in extra)}" if extra else "") if p))
    for name, t in spec.inputs.items():
        shape, dtype = arrays[name]["shape"], arrays[name]["dtype"]
        example, want = list(shape[1:]), list(t.shape[1:])
        if len(example) != len(want) or any(w not in (-1, g) for w, g in zip(want, example,
                                                                           strict=True)):
            raise InvalidInput(f"array '{name}': examples have shape {example}, the train "
                               f"input '{name}' expects {want} per example")
        target = numpy_dtype(t.dtype)
        got = np.dtype(dtype)
        if got != target and not (got.kind in "iub" and target.kind in "iuf") and not (
                got.kind == "f" and target.kind == "f"):
            raise InvalidInput(f"array '{name}' has dtype {dtype}; the train input expects "
                               f"{t.dtype}")
