import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import OFFICIAL_DIR

from restore_gym.tf_checkpoint import (
    TABLE_MAGIC,
    CheckpointError,
    crc32c,
    list_checkpoint,
    masked_crc32c,
    read_checkpoint,
    read_official_agent,
)
from restore_gym.toolbox import TOOL_SPECS, build_tool

# The released agent's variables (TensorFlow names and shapes), the contract of the agent port.
AGENT_SHAPES = {
    "prediction/l1/w": (9, 9, 3, 32),
    "prediction/l1/biases": (32,),
    "prediction/l2/w": (5, 5, 32, 24),
    "prediction/l2/biases": (24,),
    "prediction/l3/w": (5, 5, 24, 24),
    "prediction/l3/biases": (24,),
    "prediction/l4/w": (5, 5, 24, 24),
    "prediction/l4/biases": (24,),
    "prediction/l7/Matrix": (384, 32),
    "prediction/l7/bias": (32,),
    "prediction/prediction_rnn/basic_lstm_cell/kernel": (94, 200),
    "prediction/prediction_rnn/basic_lstm_cell/bias": (200,),
    "prediction/q/Matrix": (50, 13),
    "prediction/q/bias": (13,),
}


@pytest.fixture(scope="module")
def official() -> Path:
    if not OFFICIAL_DIR.is_dir():
        pytest.skip(f"the authors' released weights are not at {OFFICIAL_DIR}")
    return OFFICIAL_DIR


def copy_bundle(src_prefix: Path, dst_dir: Path, name: str | None = None) -> Path:
    """Copy a bundle's .index and data shard into dst_dir (as ``name`` if given); returns the new prefix."""
    dst = dst_dir / (name or src_prefix.name)
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(f"{src_prefix}{suffix}", f"{dst}{suffix}")
        Path(f"{dst}{suffix}").chmod(0o644)
    return dst


# A minimal writer of the same format, to exercise what the released files do not (dtypes, many blocks).


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        previous = key
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray], dtype_codes: dict[str, int] | None = None,
                 compression: int = 0, entries_per_block: int = 2) -> None:
    codes = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}
    data = bytearray()
    entries = [(b"", _field_varint(1, 1) + _field_bytes(3, _field_varint(1, 1)))]
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        shape = b"".join(_field_bytes(2, _field_varint(1, d)) for d in tensors[name].shape)
        code = (dtype_codes or {}).get(name, codes[tensors[name].dtype])
        entry = (_field_varint(1, code) + _field_bytes(2, shape) + _field_varint(4, len(data))
                 + _field_varint(5, len(raw)) + _varint(6 << 3 | 5) + struct.pack("<I", masked_crc32c(raw)))
        entries.append((name.encode(), entry))
        data += raw
    index = bytearray()

    def add_block(contents: bytes) -> bytes:
        trailer = bytes([compression]) + struct.pack("<I", masked_crc32c(contents + bytes([compression])))
        handle = _varint(len(index)) + _varint(len(contents))
        index.extend(contents + trailer)
        return handle

    handles = []
    for start in range(0, len(entries), entries_per_block):
        chunk = entries[start : start + entries_per_block]
        handles.append((chunk[-1][0], add_block(_block(chunk))))
    meta_handle = add_block(_block([]))
    index_handle = add_block(_block(handles, restart_interval=1))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    Path(f"{prefix}.index").write_bytes(bytes(index) + footer)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


def test_crc32c_known_vectors():
    # RFC 3720 appendix B.4 and the common check value.
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


def test_masked_crc32c_is_leveldb_mask():
    crc = crc32c(b"foo")
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    assert masked_crc32c(b"foo") == (rotated + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"foo") != crc


def test_synthetic_bundle_round_trip_all_dtypes_many_blocks(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "scope/a/weights": rng.standard_normal((3, 2, 4)).astype(np.float32),
        "scope/a/biases": rng.standard_normal(4).astype(np.float32),
        "scope/b": rng.standard_normal((2, 5)),
        "step": np.array(1234, dtype=np.int32),
        "big": np.array([1 << 40, -7], dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    write_bundle(tmp_path / "ckpt", tensors, entries_per_block=2)
    arrays = read_checkpoint(tmp_path / "ckpt")
    assert arrays.keys() == tensors.keys()
    for name, expected in tensors.items():
        assert arrays[name].dtype == expected.dtype and arrays[name].shape == expected.shape
        np.testing.assert_array_equal(arrays[name], expected)
    assert list_checkpoint(tmp_path / "ckpt.index")["scope/b"].shape == (2, 5)


def test_unsupported_dtype_is_refused(tmp_path):
    write_bundle(tmp_path / "ckpt", {"names": np.zeros(2, np.float32)}, dtype_codes={"names": 7})
    with pytest.raises(CheckpointError, match=r"ckpt\.index.*'names'.*DT_STRING"):
        read_checkpoint(tmp_path / "ckpt")


def test_compressed_blocks_are_refused(tmp_path):
    write_bundle(tmp_path / "ckpt", {"w": np.zeros(2, np.float32)}, compression=1)
    with pytest.raises(CheckpointError, match=r"ckpt\.index.*snappy"):
        read_checkpoint(tmp_path / "ckpt")


def test_reads_all_tools_with_architecture_shapes(official):
    for spec in TOOL_SPECS:
        arrays = read_checkpoint(official / "toolbox" / f"tool{spec.index + 1:02d}")
        tool = build_tool(spec)
        expected = {}
        for name, param in tool.named_parameters():
            scope, kind = name.rsplit(".", 1)
            shape = tuple(param.permute(2, 3, 1, 0).shape) if kind == "weight" else tuple(param.shape)
            expected[f"{scope}/{'weights' if kind == 'weight' else 'biases'}"] = shape
        assert {k: v.shape for k, v in arrays.items()} == expected
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in arrays.values())
        assert sum(v.size for v in arrays.values()) == spec.params


def test_index_path_is_accepted(official):
    by_prefix = read_checkpoint(official / "toolbox" / "tool01")
    by_index = read_checkpoint(str(official / "toolbox" / "tool01.index"))
    assert by_prefix.keys() == by_index.keys()
    assert all(np.array_equal(by_prefix[k], by_index[k]) for k in by_prefix)


def test_reads_official_agent(official):
    entries = list_checkpoint(official / "models" / "model")
    assert entries["step/step"].dtype == 3 and entries["step/step"].shape == ()
    agent = read_official_agent(official / "models")
    assert {k: v.shape for k, v in agent.items()} == AGENT_SHAPES
    assert all(v.dtype == np.float32 for v in agent.values())
    assert sum(v.size for v in agent.values()) == 87_863


def test_agent_reader_drops_optimizer_slots_and_step(tmp_path):
    w = np.ones((2, 2), np.float32)
    write_bundle(tmp_path / "model", {
        "prediction/l1/w": w, "prediction/l1/w/Adam": w, "prediction/l1/w/Adam_1": w,
        "beta1_power": np.ones((), np.float32), "step/step": np.array(5, np.int32), "target/l1/w": w,
    })
    assert read_official_agent(tmp_path).keys() == {"prediction/l1/w"}


def test_agent_reader_refuses_a_checkpoint_without_prediction_variables(tmp_path):
    write_bundle(tmp_path / "model", {"step/step": np.array(5, np.int32)})
    with pytest.raises(CheckpointError, match=r"model\.index.*prediction"):
        read_official_agent(tmp_path)


def test_missing_files(tmp_path, official):
    with pytest.raises(CheckpointError, match=r"nothing\.index does not exist"):
        read_checkpoint(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match=r"model\.index does not exist"):
        read_official_agent(tmp_path)
    prefix = copy_bundle(official / "toolbox" / "tool01", tmp_path)
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match=r"tool01\.data-00000-of-00001 does not exist"):
        read_checkpoint(prefix)


@pytest.mark.parametrize("cut", [20, 100, 300])
def test_truncated_index(tmp_path, official, cut):
    prefix = copy_bundle(official / "toolbox" / "tool01", tmp_path)
    index = Path(f"{prefix}.index")
    index.write_bytes(index.read_bytes()[:cut])
    with pytest.raises(CheckpointError, match=str(index).replace(".", r"\.")):
        read_checkpoint(prefix)


def test_bad_magic_and_foreign_file(tmp_path, official):
    prefix = copy_bundle(official / "toolbox" / "tool01", tmp_path)
    index = Path(f"{prefix}.index")
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tool01\.index is not a TensorFlow checkpoint index \(bad magic"):
        read_checkpoint(prefix)
    foreign = tmp_path / "picture.index"
    shutil.copyfile(official / "test-samples" / "mild_in" / "1_in.png", foreign)
    with pytest.raises(CheckpointError, match=r"picture\.index is not a TensorFlow checkpoint index"):
        read_checkpoint(foreign)


def test_corrupt_index_block(tmp_path, official):
    prefix = copy_bundle(official / "toolbox" / "tool01", tmp_path)
    index = Path(f"{prefix}.index")
    data = bytearray(index.read_bytes())
    data[40] ^= 0x01  # inside the data block (a tensor entry)
    index.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tool01\.index: checksum mismatch"):
        read_checkpoint(prefix)


def test_corrupt_and_truncated_data_shard(tmp_path, official):
    prefix = copy_bundle(official / "toolbox" / "tool03", tmp_path)
    shard = Path(f"{prefix}.data-00000-of-00001")
    original = shard.read_bytes()
    corrupt = bytearray(original)
    corrupt[1000] ^= 0x10
    shard.write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match=r"tool03\.data-00000-of-00001: checksum mismatch for tensor 'conv1/w"):
        read_checkpoint(prefix)
    shard.write_bytes(original[:-100])
    with pytest.raises(CheckpointError, match=r"tool03\.data-00000-of-00001 is truncated"):
        read_checkpoint(prefix)
