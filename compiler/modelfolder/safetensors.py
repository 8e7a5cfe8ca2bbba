"""Tensor names, dtypes and shapes from safetensors headers, without torch and without reading weights.

A safetensors file starts with an 8-byte little-endian header length, then that many bytes of JSON:
{name: {"dtype", "shape", "data_offsets"}}. Each header is checked the way the safetensors library
checks it (a bounded length, offsets inside the file, sizes matching the shapes) before it is believed.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

from ftc.compiler.errors import UserError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_INDEX_BYTES = 50_000_000
MAX_FILES = 10_000
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: str) -> dict[str, Tensor]:
    """The tensors one safetensors file holds; one line naming the file when its header is not sound."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            if len(head) < 8:
                raise UserError(f"model.path: {path}: not a safetensors file ({len(head)} bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES or length > size - 8:
                raise UserError(f"model.path: {path}: header claims {length} bytes; the file holds {size - 8} after "
                                f"its length (at most {MAX_HEADER_BYTES}): truncated or not safetensors")
            raw = handle.read(length)
    except OSError as exc:
        raise UserError(f"model.path: {path}: cannot read: {exc.strerror or exc}") from None
    header = json_object(raw, f"{path}: header")
    data_bytes = size - 8 - length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor(path, name, entry, data_bytes)
    return tensors


def json_object(raw: bytes, where: str) -> dict:
    """A JSON object from bytes, strictly (UTF-8, no NaN or Infinity); one line naming `where` otherwise."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"model.path: {where} is not JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise UserError(f"model.path: {where} is not a JSON object")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _tensor(path: str, name: str, entry, data_bytes: int) -> Tensor:
    where = f"model.path: {path}: tensor {name[:200]!r}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise UserError(f"{where}: unknown dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or len(shape) > 8 or not all(type(d) is int and 0 <= d < 2**48 for d in shape):
        raise UserError(f"{where}: shape is not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes):
        raise UserError(f"{where}: data_offsets lie outside the file (truncated?)")
    if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise UserError(f"{where}: its {offsets[1] - offsets[0]} bytes do not hold a {dtype} tensor of shape {shape}")
    return Tensor(dtype, tuple(shape))


def weight_files(folder: str) -> list[str] | None:
    """The folder's safetensors files: those its index names, else model.safetensors; None without any."""
    index = os.path.join(folder, INDEX)
    if os.path.isfile(index):
        if os.path.getsize(index) > MAX_INDEX_BYTES:
            raise UserError(f"model.path: {index}: larger than {MAX_INDEX_BYTES} bytes")
        try:
            with open(index, encoding="utf-8") as handle:
                weight_map = json.load(handle, parse_constant=_no_constant).get("weight_map")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
            raise UserError(f"model.path: {index}: not a safetensors index: {str(exc)[:120]}") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise UserError(f"model.path: {index}: weight_map is not a mapping of tensor names to files")
        files = sorted(set(weight_map.values()))
        if len(files) > MAX_FILES or any(os.path.basename(f) != f or f in ("", ".", "..") for f in files):
            raise UserError(f"model.path: {index}: weight_map names files outside the folder")
        missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise UserError(f"model.path: {index}: names {missing[0]!r}, which is not in {folder}")
        return [os.path.join(folder, f) for f in files]
    single = os.path.join(folder, SINGLE)
    if os.path.isfile(single):
        return [single]
    found = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    return [os.path.join(folder, f) for f in found[:MAX_FILES]] or None


def read_weights(folder: str) -> dict[str, Tensor] | None:
    """Every tensor of the folder's safetensors files (None when it has none, e.g. .bin weights only)."""
    files = weight_files(folder)
    if files is None:
        return None
    tensors: dict[str, Tensor] = {}
    for path in files:
        tensors.update(read_header(path))
    return tensors
