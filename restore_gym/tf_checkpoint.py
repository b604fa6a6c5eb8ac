"""Read TensorFlow checkpoint bundles (TF1 "V2" / TF2 format) without TensorFlow.

A bundle is ``<prefix>.index`` plus ``<prefix>.data-NNNNN-of-MMMMM`` shards. The index is a LevelDB-style
table (SSTable): prefix-compressed key/value blocks, an index block pointing at them and a 48-byte footer
ending in a magic number. Its values are serialized ``BundleEntryProto`` messages (dtype, shape, shard,
offset, size, masked CRC32C of the tensor bytes); the empty key holds the ``BundleHeaderProto``.
Everything here is parsed by hand: the protobuf wire format, the table format and CRC32C.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CheckpointError",
    "TensorEntry",
    "crc32c",
    "list_checkpoint",
    "masked_crc32c",
    "read_checkpoint",
    "read_official_agent",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked CRC32C of block contents and type byte
INDEX_SUFFIX = ".index"

# TensorFlow DataType enum values this reader decodes, with their little-endian numpy dtypes.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    9: np.dtype("<i8"),  # DT_INT64
}
DTYPE_NAMES = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16", 6: "DT_INT8",
               7: "DT_STRING", 9: "DT_INT64", 10: "DT_BOOL", 14: "DT_BFLOAT16", 19: "DT_HALF"}

AGENT_PREFIX = "prediction/"
OPTIMIZER_SLOT_MARKERS = ("/Adam", "/Momentum", "/RMSProp", "/Adagrad", "/ExponentialMovingAverage")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt, foreign or uses an unsupported feature."""


@dataclass(frozen=True)
class TensorEntry:
    """Where and how one tensor is stored in a bundle (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None


def _make_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as an unsigned 32-bit integer."""
    table = _CRC_TABLE
    crc = 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The masked CRC-32C that LevelDB tables and TensorFlow bundles store (rotate right 15, add a constant)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"{where}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{where}: varint longer than 10 bytes")


def _proto_fields(buf: bytes, where: str) -> list[tuple[int, int, int | bytes]]:
    """Split a serialized protobuf message into (field number, wire type, value) triples.

    Varints come back as ints, fixed32/fixed64 as unsigned ints, length-delimited fields as bytes.
    """
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, where)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, where)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CheckpointError(f"{where}: truncated fixed64 field")
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, where)
            if pos + length > len(buf):
                raise CheckpointError(f"{where}: truncated length-delimited field")
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CheckpointError(f"{where}: truncated fixed32 field")
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise CheckpointError(f"{where}: unsupported protobuf wire type {wire} (field {number})")
        fields.append((number, wire, value))
    return fields


def _parse_shape(buf: bytes, where: str) -> tuple[int, ...]:
    """Decode a ``TensorShapeProto`` (dim = 2 with Dim.size = 1; unknown_rank = 3)."""
    dims = []
    for number, _, value in _proto_fields(buf, where):
        if number == 2:
            if not isinstance(value, bytes):
                raise CheckpointError(f"{where}: malformed tensor shape")
            size = next((v for n, _, v in _proto_fields(value, where) if n == 1), 0)
            if size >= 1 << 63:
                raise CheckpointError(f"{where}: tensor shape has an unknown (negative) dimension")
            dims.append(size)
        elif number == 3 and value:
            raise CheckpointError(f"{where}: tensor shape has unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes, where: str) -> TensorEntry:
    """Decode a ``BundleEntryProto``: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7."""
    values: dict[int, int | bytes] = {}
    for number, _, value in _proto_fields(buf, where):
        if number == 7:
            raise CheckpointError(f"{where}: tensor {name!r} is a partitioned (sliced) variable, not supported")
        values[number] = value
    if not isinstance(values.get(2, b""), bytes) or any(isinstance(values.get(n, 0), bytes) for n in (1, 3, 4, 5, 6)):
        raise CheckpointError(f"{where}: malformed entry for tensor {name!r}")
    shape = _parse_shape(values[2], where) if 2 in values else ()
    return TensorEntry(
        name=name,
        dtype=int(values.get(1, 0)),
        shape=shape,
        shard_id=int(values.get(3, 0)),
        offset=int(values.get(4, 0)),
        size=int(values.get(5, 0)),
        crc32c=values.get(6),
    )


def _read_block(data: bytes, offset: int, size: int, where: str) -> bytes:
    """The contents of the table block at (offset, size), after checking its trailer."""
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointError(f"{where}: block at offset {offset} runs past the end of the file (truncated?)")
    contents = data[offset:end]
    kind = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if masked_crc32c(data[offset : end + 1]) != stored:
        raise CheckpointError(f"{where}: checksum mismatch in the table block at offset {offset} (corrupt file)")
    if kind != 0:
        codec = "snappy" if kind == 1 else f"type {kind}"
        raise CheckpointError(f"{where}: table block at offset {offset} is {codec}-compressed; only uncompressed "
                              "index files are supported (TensorFlow writes them uncompressed by default)")
    return contents


def _block_entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """Decode the (key, value) pairs of a table block (prefix-compressed keys, restart array at the end)."""
    if len(block) < 4:
        raise CheckpointError(f"{where}: table block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CheckpointError(f"{where}: table block has an impossible restart count {num_restarts}")
    entries = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos, where)
        unshared, pos = _varint(block, pos, where)
        value_length, pos = _varint(block, pos, where)
        if shared > len(key) or pos + unshared + value_length > limit:
            raise CheckpointError(f"{where}: malformed entry in a table block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def _block_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, where)
    size, pos = _varint(buf, pos, where)
    return offset, size, pos


def _index_path(prefix: str | os.PathLike) -> Path:
    path = Path(prefix)
    return path if path.name.endswith(INDEX_SUFFIX) else path.with_name(path.name + INDEX_SUFFIX)


def _parse_index(index: Path) -> tuple[int, dict[str, TensorEntry]]:
    """Parse a bundle's ``.index`` table: returns (number of data shards, tensor entries by name)."""
    where = str(index)
    try:
        data = index.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{where} does not exist; expected the .index file of a TensorFlow checkpoint "
                              f"bundle (pass the path without the .index suffix)") from None
    except OSError as error:
        raise CheckpointError(f"{where} cannot be read: {error}") from error
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(f"{where} is too short ({len(data)} bytes) to be a TensorFlow checkpoint index "
                              "(truncated file?)")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(f"{where} is not a TensorFlow checkpoint index (bad magic number); expected the "
                              ".index file of a TF2/TF1 V2 checkpoint bundle")
    _, _, pos = _block_handle(footer, 0, where)  # the metaindex block, which bundles leave empty
    index_offset, index_size, _ = _block_handle(footer, pos, where)
    header: bytes | None = None
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, where), where):
        offset, size, _ = _block_handle(handle, 0, where)
        for key, value in _block_entries(_read_block(data, offset, size, where), where):
            if key == b"":
                header = value
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError(f"{where}: tensor name {key!r} is not UTF-8 (corrupt file?)") from None
            entries[name] = _parse_entry(name, value, where)
    if header is None:
        raise CheckpointError(f"{where} has no bundle header (empty key); not a TensorFlow checkpoint bundle index")
    return _parse_header(header, where, entries), entries


def _parse_header(header: bytes, where: str, entries: dict[str, TensorEntry]) -> int:
    """Validate a ``BundleHeaderProto`` (num_shards 1, endianness 2 with 0 = little); returns num_shards."""
    fields = {number: value for number, _, value in _proto_fields(header, where)}
    num_shards = int(fields.get(1, 0))
    if fields.get(2, 0) != 0:
        raise CheckpointError(f"{where}: big-endian checkpoint bundles are not supported")
    bad = sorted(e.name for e in entries.values() if not 0 <= e.shard_id < num_shards)
    if bad:
        raise CheckpointError(f"{where}: tensors {bad} point to shards outside the header's {num_shards}")
    return num_shards


def list_checkpoint(prefix: str | os.PathLike) -> dict[str, TensorEntry]:
    """The tensor entries (name, dtype, shape, location) of a bundle, keyed by variable name, without reading data.

    ``prefix`` is the bundle path without ``.index`` (the ``.index`` path itself is accepted too).
    Raises :class:`CheckpointError` if the index is missing, truncated, corrupt or not a bundle index.
    """
    return _parse_index(_index_path(prefix))[1]


def read_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every tensor of a TensorFlow checkpoint bundle into numpy arrays keyed by variable name.

    ``prefix`` is the bundle path without ``.index`` (the ``.index`` path itself is accepted too); the data
    shards are found next to it. Each tensor's stored CRC32C is verified. Supported dtypes: float32,
    float64, int32, int64; any other raises. Raises :class:`CheckpointError` for missing, truncated,
    corrupt, foreign or unsupported files, naming the file.
    """
    index = _index_path(prefix)
    base = index.with_name(index.name[: -len(INDEX_SUFFIX)])
    num_shards, entries = _parse_index(index)
    for entry in entries.values():
        if entry.dtype not in DTYPES:
            dtype = DTYPE_NAMES.get(entry.dtype, f"enum value {entry.dtype}")
            raise CheckpointError(f"{index}: tensor {entry.name!r} has dtype {dtype}; this reader supports "
                                  "DT_FLOAT, DT_DOUBLE, DT_INT32 and DT_INT64")
    shards: dict[int, bytes] = {}
    arrays: dict[str, np.ndarray] = {}
    for entry in entries.values():
        shard_path = base.with_name(f"{base.name}.data-{entry.shard_id:05d}-of-{num_shards:05d}")
        if entry.shard_id not in shards:
            try:
                shards[entry.shard_id] = shard_path.read_bytes()
            except FileNotFoundError:
                raise CheckpointError(f"{shard_path} does not exist; the checkpoint bundle {index} needs it") from None
            except OSError as error:
                raise CheckpointError(f"{shard_path} cannot be read: {error}") from error
        shard = shards[entry.shard_id]
        dtype = DTYPES[entry.dtype]
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != count * dtype.itemsize:
            raise CheckpointError(f"{index}: tensor {entry.name!r} of shape {entry.shape} claims {entry.size} bytes, "
                                  f"expected {count * dtype.itemsize} (corrupt index)")
        end = entry.offset + entry.size
        if end > len(shard):
            raise CheckpointError(f"{shard_path} is truncated: tensor {entry.name!r} needs bytes "
                                  f"{entry.offset}..{end} but the file has {len(shard)}")
        raw = shard[entry.offset : end]
        if entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise CheckpointError(f"{shard_path}: checksum mismatch for tensor {entry.name!r} (corrupt file)")
        arrays[entry.name] = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))
    return arrays


def read_official_agent(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the RL-Restore authors' agent checkpoint (``<model_dir>/model.index`` + data) into arrays.

    Keeps only the network's ``prediction/...`` variables under their TensorFlow names (kernels in HWIO,
    matrices as input x output); drops the global step, optimizer slots and target-network copies.
    """
    arrays = read_checkpoint(Path(model_dir) / "model")
    kept = {
        name: array
        for name, array in arrays.items()
        if name.startswith(AGENT_PREFIX) and not any(marker in name for marker in OPTIMIZER_SLOT_MARKERS)
    }
    if not kept:
        raise CheckpointError(f"{Path(model_dir) / 'model.index'} holds no prediction/... variables; "
                              "expected the RL-Restore agent checkpoint")
    return kept
