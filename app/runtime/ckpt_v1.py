"""A reader of TensorFlow's V1 checkpoint format in numpy, for the per-update path.

A V1 checkpoint (what tf.raw_ops.Save, and so a model's `save` signature, writes) is an
uncompressed SSTable: data blocks of prefix-compressed key/value entries, an index block,
a footer. The entry with the empty key holds a SavedTensorSliceMeta (each tensor's name,
shape and dtype); each other entry holds one tensor's SavedSlice, whose TensorProto keeps
float values as one packed field: raw little-endian bytes, read here with np.frombuffer,
no copy and no TensorFlow. Anything else (other dtypes, sliced tensors, compression)
answers None, and the caller falls back to TensorFlow's own reader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAGIC = 0xDB4775248B80FB57
_FLOAT_FIELDS = {1: (5, "<f4"), 2: (6, "<f8")}  # DataType -> (TensorProto field, dtype)


class _Unsupported(Exception):
    pass


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> list[tuple[int, int, Any]]:
    """A protobuf message's fields: (number, wire type, value: an int or a memoryview)."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, wire, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            out.append((number, wire, buf[pos:pos + size]))
            pos += size
        elif wire == 5:
            out.append((number, wire, buf[pos:pos + 4]))
            pos += 4
        elif wire == 1:
            out.append((number, wire, buf[pos:pos + 8]))
            pos += 8
        else:
            raise _Unsupported(f"wire type {wire}")
    return out


def _entries(data: memoryview, start: int, size: int) -> list[tuple[bytes, memoryview]]:
    """The key/value entries of one block."""
    block = data[start:start + size]
    restarts = int.from_bytes(block[size - 4:size], "little")
    limit = size - 4 - 4 * restarts
    out, pos, key = [], 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        out.append((key, block[pos:pos + vlen]))
        pos += vlen
    return out


def _handle(buf: memoryview, pos: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _meta(value: memoryview) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, DataType) from the SavedTensorSliceMeta entry."""
    out = {}
    for number, _, meta in _fields(value):
        if number != 1:
            continue
        for n, _, tensor in _fields(meta):  # type: ignore[arg-type]
            if n != 1:
                continue
            name, shape, dtype, sliced = "", [], 0, False
            for f, _, v in _fields(tensor):  # type: ignore[arg-type]
                if f == 1:
                    name = bytes(v).decode()  # type: ignore[arg-type]
                elif f == 2:
                    for d, _, dim in _fields(v):  # type: ignore[arg-type]
                        if d == 2:
                            shape.append(next((s for k, _, s in _fields(dim)  # type: ignore[arg-type]
                                               if k == 1), 0))
                elif f == 3:
                    dtype = int(v)  # type: ignore[arg-type]
                elif f == 4:  # a partial slice has extents with a start or length set
                    sliced |= any(_fields(e) for _, _, e in _fields(v))  # type: ignore[arg-type]
            if sliced:
                raise _Unsupported(f"{name} is saved in slices")
            out[name] = (tuple(int(s) for s in shape), dtype)
    return out


# Every checkpoint of one model has the same layout (names, shapes, block boundaries): only
# the float values differ. The first read of a layout records where each tensor's values lie;
# later reads of a file with the same skeleton slice them there, with no parsing.
_LAYOUTS: dict[bytes, list[tuple[str, int, int, str, tuple[int, ...], bytes]]] = {}
_PREFIX = 8  # bytes before each tensor's values that a later file must repeat exactly


def read(data: bytes) -> dict[str, np.ndarray] | None:
    """The named arrays of a V1 checkpoint's bytes, or None when this reader cannot say."""
    if len(data) < 48:
        return None
    key = _skeleton(data)
    layout = _LAYOUTS.get(key) if key is not None else None
    if layout is not None:
        out = {}
        for name, start, count, dtype, shape, prefix in layout:
            if data[start - _PREFIX:start] != prefix:
                break  # not the same layout after all: parse it
            out[name] = np.frombuffer(data, dtype=dtype, count=count,
                                      offset=start).reshape(shape).astype(dtype[1:])
        else:
            return out
    parsed = _parse(data)
    if parsed is None:
        return None
    arrays, starts = parsed
    if key is not None:
        _LAYOUTS[key] = [(name, starts[name], arr.size, arr.dtype.newbyteorder("<").str,
                          arr.shape, data[starts[name] - _PREFIX:starts[name]])
                         for name, arr in arrays.items()]
    return arrays


def _skeleton(data: bytes) -> bytes | None:
    """What a checkpoint's layout depends on: its size, the index block and the footer."""
    try:
        view = memoryview(data)
        _, _, pos = _handle(view, len(data) - 48)
        index_offset, index_size, _ = _handle(view, pos)
        return len(data).to_bytes(8, "little") + bytes(view[index_offset:])
    except (IndexError, ValueError):
        return None


def _parse(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, int]] | None:
    """The arrays, and where each one's values start in `data`."""
    try:
        view = memoryview(data)
        if len(data) < 48 or int.from_bytes(data[-8:], "little") != MAGIC:
            return None
        _, _, pos = _handle(view, len(data) - 48)  # the metaindex, unused
        index_offset, index_size, _ = _handle(view, pos)
        meta: dict[str, tuple[tuple[int, ...], int]] | None = None
        values: dict[str, memoryview] = {}
        for _, handle in _entries(view, index_offset, index_size):
            offset, size, _ = _handle(handle, 0)
            if data[offset + size] != 0:  # the block trailer's type: 0 is uncompressed
                return None
            for key, value in _entries(view, offset, size):
                if key == b"":
                    meta = _meta(value)
                    continue
                for number, _, saved in _fields(value):
                    if number == 2:
                        name, proto = _saved_slice(saved)  # type: ignore[arg-type]
                        values[name] = proto
        if meta is None or set(meta) != set(values):
            return None
        base = np.frombuffer(data, dtype=np.uint8).ctypes.data
        arrays, starts = {}, {}
        for name in sorted(meta):
            raw = _raw(values[name], *meta[name])
            starts[name] = np.frombuffer(raw, dtype=np.uint8).ctypes.data - base
            arrays[name] = _array(raw, *meta[name])
        return arrays, starts
    except (_Unsupported, IndexError, ValueError, UnicodeDecodeError, KeyError):
        return None


def _saved_slice(saved: memoryview) -> tuple[str, memoryview]:
    name, proto = "", memoryview(b"")
    for number, _, value in _fields(saved):
        if number == 1:
            name = bytes(value).decode()  # type: ignore[arg-type]
        elif number == 3:
            proto = value  # type: ignore[assignment]
    return name, proto


def _raw(proto: memoryview, shape: tuple[int, ...], dtype: int) -> memoryview:
    """The packed values of a tensor's TensorProto."""
    if dtype not in _FLOAT_FIELDS:
        raise _Unsupported(f"DataType {dtype}")
    field, np_dtype = _FLOAT_FIELDS[dtype]
    raw = next((v for n, w, v in _fields(proto) if n == field and w == 2), None)
    if raw is None:
        raise _Unsupported("no packed values")
    count = int(np.prod(shape)) if shape else 1
    if len(raw) != count * np.dtype(np_dtype).itemsize:
        raise _Unsupported("value count does not match the shape")
    return raw  # type: ignore[no-any-return]


def _array(raw: memoryview, shape: tuple[int, ...], dtype: int) -> np.ndarray:
    np_dtype = _FLOAT_FIELDS[dtype][1]
    # A copy: writable, and independent of `data`.
    return np.frombuffer(raw, dtype=np_dtype).reshape(shape).astype(np_dtype[1:])
