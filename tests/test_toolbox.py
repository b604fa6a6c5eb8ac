import shutil

import numpy as np
import pytest
import torch
from conftest import REFERENCE, sample_batches
from torch import nn

from restore_gym import records
from restore_gym.metrics import psnr_batch
from restore_gym.tf_checkpoint import CheckpointError, read_checkpoint
from restore_gym.toolbox import (
    TOOL_SPECS,
    LargeTool,
    SmallTool,
    Toolbox,
    build_tool,
    count_macs,
    count_parameters,
)


@pytest.fixture(scope="module")
def official_toolbox(official) -> Toolbox:
    return Toolbox.from_official(official / "toolbox")


@pytest.fixture
def toolbox() -> Toolbox:
    torch.manual_seed(0)
    return Toolbox()


def test_specs_match_the_paper():
    assert len(TOOL_SPECS) == 12
    assert [s.index for s in TOOL_SPECS] == list(range(12))
    assert [s.name for s in TOOL_SPECS] == [f"{p}-{k}" for p in ("deblur", "denoise", "dejpeg") for k in range(1, 5)]
    assert [s.family for s in TOOL_SPECS] == ["blur"] * 4 + ["noise"] * 4 + ["jpeg"] * 4
    assert [s.band for s in TOOL_SPECS] == [
        (0, 1.25), (1.25, 2.5), (2.5, 3.75), (3.75, 5),
        (0, 12.5), (12.5, 25), (25, 37.5), (37.5, 50),
        (60, 100), (35, 60), (20, 35), (10, 20),
    ]
    small = {1, 2, 5, 6, 9, 10}
    assert [s.size for s in TOOL_SPECS] == ["small" if i + 1 in small else "large" for i in range(12)]
    with pytest.raises(AttributeError):
        TOOL_SPECS[0].name = "x"


def test_parameter_counts():
    assert count_parameters(SmallTool()) == 21_827
    assert count_parameters(LargeTool()) == 50_851
    for spec in TOOL_SPECS:
        assert spec.params == count_parameters(build_tool(spec)) == (21_827 if spec.size == "small" else 50_851)
    assert count_parameters(Toolbox()) == 436_068


def test_multiply_adds():
    small, large = TOOL_SPECS[0], TOOL_SPECS[2]
    assert round(small.macs / 1e6, 1) == 86.4 and round(large.macs / 1e6, 1) == 200.7
    assert small.macs == (9 * 9 * 3 * 32 + 5 * 5 * 32 * 16 + 5 * 5 * 16 * 3) * 63 * 63
    tool = SmallTool()
    assert count_macs(tool, 10, 20) == small.macs // (63 * 63) * 200
    assert tool.conv1.weight.device.type == "cpu"  # counting leaves the module alone


def test_batched_apply_equals_per_sample(toolbox):
    x = torch.rand(9, 3, 21, 21)
    ids = [3, 0, 11, 3, 7, 0, 5, 11, 2]
    batched = toolbox.apply(x, ids)
    assert batched.shape == x.shape
    for n, tool in enumerate(ids):
        single = toolbox.run_tool(tool, x[n : n + 1])
        torch.testing.assert_close(batched[n : n + 1], single.detach(), rtol=1e-5, atol=1e-5)


def test_each_distinct_tool_runs_once_on_its_sub_batch(toolbox):
    calls: dict[int, list[int]] = {i: [] for i in range(12)}
    for i, tool in enumerate(toolbox.tools):
        tool.register_forward_hook(lambda _m, inputs, _out, i=i: calls[i].append(inputs[0].shape[0]))
    toolbox.apply(torch.rand(6, 3, 15, 15), torch.tensor([4, 9, 4, 4, 1, 9]))
    assert calls == {i: {4: [3], 9: [2], 1: [1]}.get(i, []) for i in range(12)}


@pytest.mark.parametrize("ids", [[1, 2, 1], np.array([1, 2, 1]), torch.tensor([1, 2, 1], dtype=torch.int32), (1, 2, 1)])
def test_tool_id_containers(toolbox, ids):
    x = torch.rand(3, 3, 8, 8)
    expected = torch.stack([toolbox.run_tool(t, x[n : n + 1])[0] for n, t in enumerate([1, 2, 1])]).detach()
    torch.testing.assert_close(toolbox.apply(x, ids), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (17, 40), (64, 33)])
def test_any_image_size(toolbox, size):
    x = torch.rand(2, 3, *size)
    assert toolbox.apply(x, [2, 8]).shape == x.shape
    assert toolbox.apply(x[:0], []).shape == (0, 3, *size)


def test_forward_is_differentiable(toolbox):
    x = torch.rand(4, 3, 12, 12, requires_grad=True)
    out = toolbox(x, [0, 6, 6, 10])
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for i, tool in enumerate(toolbox.tools):
        grads = [p.grad for p in tool.parameters()]
        if i in (0, 6, 10):
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)


def test_apply_is_inference_only_and_matches_forward(toolbox):
    x = torch.rand(3, 3, 10, 10)
    out = toolbox.apply(x, [5, 5, 1])
    assert out.is_inference() and not out.requires_grad
    torch.testing.assert_close(out, toolbox(x, [5, 5, 1]).detach())


def test_module_apply_still_works(toolbox):
    seen = []
    assert toolbox.apply(lambda m: seen.append(type(m))) is toolbox
    assert seen.count(SmallTool) == 6 and seen[-1] is Toolbox


@pytest.mark.parametrize(
    ("x", "ids", "error", "match"),
    [
        (torch.rand(3, 8, 8), [0], ValueError, "4-D"),
        (torch.rand(1, 1, 8, 8), [0], ValueError, "3 \\(RGB\\) channels"),
        (torch.rand(1, 8, 8, 3), [0], ValueError, "permute"),
        (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), [0], TypeError, "floating-point.*/ 255"),
        (torch.rand(1, 3, 8, 8) * 255, [0], ValueError, r"\[0, 1\].*divided by 255"),
        (torch.rand(1, 3, 8, 8) - 1.0, [0], ValueError, r"\[0, 1\]"),
        (torch.full((1, 3, 8, 8), float("nan")), [0], ValueError, r"\[0, 1\]"),
        (np.random.rand(1, 3, 8, 8).astype(np.float32), [0], TypeError, "torch.Tensor"),
        (torch.rand(2, 3, 8, 8), [0, 12], ValueError, r"0\.\.11.*\[12\]"),
        (torch.rand(2, 3, 8, 8), [-1, 0], ValueError, r"0\.\.11"),
        (torch.rand(2, 3, 8, 8), [0.0, 1.0], TypeError, "integers"),
        (torch.rand(2, 3, 8, 8), torch.tensor([0.0, 1.0]), TypeError, "integers"),
        (torch.rand(2, 3, 8, 8), torch.tensor([True, False]), TypeError, "integers"),
        (torch.rand(2, 3, 8, 8), 3, TypeError, "one tool"),
        (torch.rand(2, 3, 8, 8), [0, 1, 2], ValueError, "3 entries but the batch has 2"),
        (torch.rand(2, 3, 8, 8), [[0, 1]], ValueError, "1-D"),
    ],
)
def test_bad_inputs_raise(toolbox, x, ids, error, match):
    with pytest.raises(error, match=match):
        toolbox.apply(x, ids)
    with pytest.raises(error, match=match):
        toolbox(x, ids)


def test_outputs_slightly_outside_unit_range_are_accepted(toolbox):
    x = torch.rand(1, 3, 8, 8) * 1.2 - 0.1
    assert toolbox.apply(x, [0]).shape == x.shape


def test_run_tool_validation(toolbox):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"0\.\.11"):
        toolbox.run_tool(12, x)
    with pytest.raises(TypeError, match="int"):
        toolbox.run_tool(1.0, x)
    with pytest.raises(ValueError, match="255"):
        toolbox.run_tool(1, x * 255)
    torch.testing.assert_close(toolbox.run_tool(np.int64(3), x), toolbox.tools[3](x))


def test_save_load_round_trip(tmp_path, toolbox):
    toolbox.version = 2
    toolbox.metadata = {"corpus": "test", "iterations": [1, 2], "lr": 1e-4}
    path = tmp_path / "toolbox.pt"
    toolbox.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toolbox.pt"]
    loaded = Toolbox.load(path)
    assert loaded.version == 2 and loaded.metadata == toolbox.metadata
    for (name, a), (_, b) in zip(toolbox.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.rand(2, 3, 9, 9)
    torch.testing.assert_close(loaded.apply(x, [4, 11]), toolbox.apply(x, [4, 11]))


def test_failed_save_keeps_the_previous_file(tmp_path, toolbox, monkeypatch):
    path = tmp_path / "toolbox.pt"
    toolbox.version = 1
    toolbox.save(path)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    toolbox.version = 2
    with pytest.raises(OSError, match="disk full"):
        toolbox.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and Toolbox.load(path).version == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toolbox.pt"]


def test_load_errors(tmp_path, toolbox):
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        Toolbox.load(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt"):
        Toolbox.load(garbage)
    bare = tmp_path / "bare.pt"
    torch.save(toolbox.state_dict(), bare)
    with pytest.raises(ValueError, match="bare.pt is not a toolbox file"):
        Toolbox.load(bare)
    state = {"architecture": "something-else", "version": 0, "metadata": {}, "state_dict": toolbox.state_dict()}
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt holds architecture 'something-else'"):
        Toolbox.load(tmp_path / "other.pt")


def test_load_refuses_a_state_for_another_architecture(tmp_path, toolbox):
    toolbox.tools[0] = LargeTool()  # tool 1 is small in the real architecture
    toolbox.save(tmp_path / "wrong.pt")
    pattern = r"wrong\.pt does not match.*unexpected.*tools\.0\.conv1_2.*mis-shaped.*tools\.0\.conv1\.weight"
    with pytest.raises(ValueError, match=pattern):
        Toolbox.load(tmp_path / "wrong.pt")


def test_the_shipped_toolboxes_load_offline():
    plain, joint = Toolbox.pretrained(), Toolbox.pretrained(variant="joint")
    assert count_parameters(plain) == count_parameters(joint) == 436_068
    assert plain.version == 0 and joint.version > 0  # joint: rounds of fine-tuning on the shipped agent's chains
    assert joint.metadata["base_toolbox"]["metadata"]["name"] == plain.metadata["name"]
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), joint.state_dict().values()))
    v3 = Toolbox.pretrained(variant="v3")
    assert v3.metadata["name"] == "restore-gym-cpu-v3" and v3.metadata["base"] == plain.metadata["name"]
    assert [r["tools"] for r in v3.metadata["rounds"]] == [list(range(1, 13)), [7, 8], [7, 8]]
    assert v3.metadata["rounds"][2]["config"]["balance_difficulties"] is True
    assert v3.fingerprint() != plain.fingerprint()
    v4 = Toolbox.pretrained(variant="v4")
    assert v4.metadata["name"] == "restore-gym-cpu-v4" and v4.metadata["base"] == plain.metadata["name"]
    assert [r["tools"] for r in v4.metadata["rounds"]] == [[1, 2, 5, 6, 9, 10, 11], [3, 4, 7, 8], [12], [1, 9]]
    assert {r["config"]["loss"] for r in v4.metadata["rounds"]} == {"psnr"}
    assert [r["init"] for r in v4.metadata["rounds"]][:3] == ["toolbox.pt", "toolbox-v3.pt", "toolbox.pt"]
    assert len({v4.fingerprint(), v3.fingerprint(), plain.fingerprint()}) == 3
    with pytest.raises(ValueError, match="unknown toolbox variant 'best'; choose one of plain, v2, v3, v4, joint"):
        Toolbox.pretrained(variant="best")


def test_from_official_missing_or_foreign_files(tmp_path, official):
    with pytest.raises(CheckpointError, match=r"tool01\.index does not exist"):
        Toolbox.from_official(tmp_path)
    for i in range(1, 13):
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copyfile(official / "toolbox" / f"tool{i:02d}{suffix}", tmp_path / f"tool{i:02d}{suffix}")
    for suffix in (".index", ".data-00000-of-00001"):  # a large tool where a small one belongs
        shutil.copyfile(official / "toolbox" / f"tool03{suffix}", tmp_path / f"tool02{suffix}")
    with pytest.raises(CheckpointError, match=r"tool02\.index does not hold a SmallTool"):
        Toolbox.from_official(tmp_path)


def test_official_orientation_is_an_image_transpose(official, official_toolbox):
    # The released kernels used as stored (HWIO -> OIHW, no spatial swap) on transposed images, transposed
    # back, must equal our converted tools on images in their normal orientation.
    x = torch.rand(2, 3, 20, 31)
    for spec in TOOL_SPECS:
        raw = build_tool(spec)
        arrays = read_checkpoint(official / "toolbox" / f"tool{spec.index + 1:02d}")
        with torch.no_grad():
            for name, conv in raw.named_modules():
                if isinstance(conv, nn.Conv2d):
                    conv.weight.copy_(torch.from_numpy(arrays[f"{name}/weights"].transpose(3, 2, 0, 1).copy()))
                    conv.bias.copy_(torch.from_numpy(arrays[f"{name}/biases"]))
            expected = raw(x.transpose(2, 3)).transpose(2, 3)
        torch.testing.assert_close(official_toolbox.run_tool(spec.index, x).detach(), expected, rtol=1e-5, atol=1e-5)


def test_fidelity_single_tool_psnr_matches_reference(official, official_toolbox):
    inputs, targets = sample_batches(official)
    input_psnr = psnr_batch(inputs, targets)
    for row, (key, (reference_in, _, _, _)) in enumerate(REFERENCE.items()):
        assert abs(float(input_psnr[row]) - reference_in) < 0.001, key
    for tool in range(12):
        out = official_toolbox.apply(inputs, [tool] * len(REFERENCE))
        ours = psnr_batch(out, targets)
        for row, (key, (_, _, _, reference_tools)) in enumerate(REFERENCE.items()):
            assert abs(float(ours[row]) - reference_tools[tool]) < 0.01, (key, tool + 1, float(ours[row]))


def test_fidelity_official_toolchains_match_reference(official, official_toolbox):
    # The official agent's chains, replayed through our tools without clipping between steps.
    inputs, targets = sample_batches(official)
    for row, (key, (_, chain, reference_out, _)) in enumerate(REFERENCE.items()):
        state = inputs[row : row + 1]
        for tool in chain:
            state = official_toolbox.apply(state, [tool - 1])
        assert abs(float(psnr_batch(state, targets[row : row + 1])[0]) - reference_out) < 0.001, key


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_load_refuses_non_finite_weights_naming_the_tool(tmp_path, toolbox, value):
    with torch.no_grad():
        toolbox.tools[6].conv2.weight[0, 0, 0, 0] = value
    toolbox.save(tmp_path / "diverged.pt")
    with pytest.raises(ValueError, match=r"diverged\.pt holds NaN or infinite weights in tool\(s\) 7 \(denoise-3\)"):
        Toolbox.load(tmp_path / "diverged.pt")


def test_every_shipped_weights_file_matches_its_recorded_digest():
    recorded = dict(reversed(line.split()) for line in (records.WEIGHTS_DIR / "SHA256SUMS").read_text().splitlines())
    shipped = sorted(p.name for p in records.WEIGHTS_DIR.glob("*.pt"))
    assert sorted(recorded) == shipped
    for name in shipped:
        assert records.file_sha256(records.WEIGHTS_DIR / name) == recorded[name], name


def test_a_shipped_file_is_checked_against_its_recorded_digest_once(tmp_path, monkeypatch):
    shipped, weights = records.WEIGHTS_DIR, tmp_path / "weights"
    weights.mkdir()
    shutil.copyfile(shipped / "toolbox.pt", weights / "toolbox.pt")
    monkeypatch.setattr(records, "WEIGHTS_DIR", weights)
    with pytest.raises(ValueError, match=r"toolbox\.pt cannot be trusted: no SHA-256 is recorded.*sha256sum \*\.pt"):
        Toolbox.load(weights / "toolbox.pt")
    shutil.copyfile(shipped / "SHA256SUMS", weights / "SHA256SUMS")
    hashed, real_sha256 = [], records.file_sha256
    monkeypatch.setattr(records, "file_sha256", lambda path: hashed.append(path) or real_sha256(path))
    Toolbox.load(weights / "toolbox.pt")
    Toolbox.load(weights / "toolbox.pt")
    assert len(hashed) == 1  # verified once per process and file version
    damaged = bytearray((weights / "toolbox.pt").read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one bit: the archive's CRC would see it too, the digest is checked first
    (weights / "toolbox.pt").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"toolbox\.pt cannot be trusted: its SHA-256 differs.*reinstall restore-gym"):
        Toolbox.load(weights / "toolbox.pt")
