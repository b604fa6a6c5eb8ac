import numpy as np
import pytest
import torch
from conftest import REFERENCE, sample_batches

from restore_gym import lstm_dqn
from restore_gym.engine import NUM_ACTIONS, STOP
from restore_gym.lstm_dqn import TF_SHAPES, QNetwork, greedy_chain, previous_tool_onehot
from restore_gym.metrics import psnr_batch
from restore_gym.tf_checkpoint import CheckpointError, read_official_agent
from restore_gym.toolbox import Toolbox


def random_tf_agent(seed: int = 0, shapes: dict[str, tuple[int, ...]] = TF_SHAPES) -> dict[str, np.ndarray]:
    """Random variables in the authors' TF layout, scaled so that ReLUs and gates stay in their active range."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])) if len(shape) > 1 else 0.1, shape).astype(np.float32)
        for name, shape in shapes.items()
    }


def network_from_arrays(monkeypatch, arrays: dict[str, np.ndarray], model_dir: str = "some/model/dir") -> QNetwork:
    monkeypatch.setattr(lstm_dqn, "read_official_agent", lambda _dir: arrays)
    return QNetwork.from_official(model_dir)


# --- A direct, unoptimised re-implementation of the authors' TensorFlow graph, in their layout (float64) ---


def tf_same_conv(x: torch.Tensor, w: np.ndarray, b: np.ndarray, stride: int) -> torch.Tensor:
    """tf.nn.conv2d(x, w, stride, 'SAME') + b, ReLU; x is N x H x W x C, w is HWIO."""
    n, size, _, channels = x.shape
    k = w.shape[0]
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    before = total // 2
    padded = torch.zeros(n, size + total, size + total, channels, dtype=x.dtype)
    padded[:, before : before + size, before : before + size] = x
    kernel = torch.from_numpy(w).double()
    y = torch.zeros(n, out, out, w.shape[3], dtype=x.dtype)
    for a in range(k):
        for c in range(k):
            window = padded[:, a : a + (out - 1) * stride + 1 : stride, c : c + (out - 1) * stride + 1 : stride]
            y += torch.einsum("nhwi,io->nhwo", window, kernel[a, c])
    return torch.relu(y + torch.from_numpy(b).double())


def tf_agent_step(arrays, image_nhwc, onehot, h, c):
    """One step of the authors' agent: image N x H x W x 3 in their (transposed) layout; returns q, h, c."""
    x = image_nhwc.double()
    for layer, stride in (("l1", 2), ("l2", 2), ("l3", 2), ("l4", 2)):
        x = tf_same_conv(x, arrays[f"prediction/{layer}/w"], arrays[f"prediction/{layer}/biases"], stride)
    x = x.reshape(x.shape[0], -1)  # NHWC flatten
    var = {name: torch.from_numpy(a).double() for name, a in arrays.items()}
    x = torch.relu(x @ var["prediction/l7/Matrix"] + var["prediction/l7/bias"])
    x = torch.cat([x, onehot.double()], dim=1)
    z = torch.cat([x, h], dim=1) @ var["prediction/prediction_rnn/basic_lstm_cell/kernel"]
    i, j, f, o = (z + var["prediction/prediction_rnn/basic_lstm_cell/bias"]).split(50, dim=1)
    c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)  # BasicLSTMCell, forget_bias = 1.0
    h = torch.tanh(c) * torch.sigmoid(o)
    return h @ var["prediction/q/Matrix"] + var["prediction/q/bias"], h, c


def assert_matches_tf_layout(network: QNetwork, arrays: dict[str, np.ndarray]) -> None:
    """Our network on images == the TF-layout agent on the transposed images, over 3 recurrent steps."""
    torch.manual_seed(1)
    batch = 5
    h = c = torch.zeros(batch, 50, dtype=torch.float64)
    state = None
    for step in range(3):
        images = torch.rand(batch, 3, 63, 63) * 1.2 - 0.1
        onehot = previous_tool_onehot(torch.randint(-1, NUM_ACTIONS, (batch,)) if step else torch.full((batch,), -1))
        expected, h, c = tf_agent_step(arrays, images.permute(0, 3, 2, 1), onehot, h, c)  # transposed NHWC
        with torch.no_grad():
            q_values, state = network(images, onehot, state)
        torch.testing.assert_close(q_values.double(), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(state[0].double(), h, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(state[1].double(), c, rtol=1e-4, atol=1e-5)


# --- Architecture ---


def test_parameter_count_is_the_papers():
    network = QNetwork()
    total = sum(p.numel() for p in network.parameters())
    assert total == 88_063  # nn.LSTMCell's second bias (bias_hh) adds 200 to TensorFlow's count
    assert total - network.lstm.bias_hh.numel() == 87_863
    assert sum(int(np.prod(shape)) for shape in TF_SHAPES.values()) == 87_863


def test_tf_same_padding_and_shapes():
    network = QNetwork()
    sizes, pads = [], []
    x = torch.rand(2, 3, 63, 63)
    for conv in (network.l1, network.l2, network.l3, network.l4):
        size, kernel = x.shape[-1], conv.kernel_size[0]
        x = conv(x)
        sizes.append(x.shape[-1])
        pads.append((x.shape[-1] - 1) * 2 + kernel - size)
    assert sizes == [32, 16, 8, 4] and pads == [8, 3, 3, 3]  # odd totals: 1 before, 2 after
    # TF pads 32 -> 16 (5x5/2) with 1 row before and 2 after: output o sees input rows 2o-1 .. 2o+3.
    # (Symmetric padding of 2 would make it 2o-2 .. 2o+2.) Probe with all-ones weights and impulses.
    conv = network.l2
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        for row, seen_by, unseen_by in ((3, 0, 3), (4, 2, 3), (31, 15, 13)):
            impulse = torch.zeros(1, 32, 32, 32)
            impulse[..., row, row] = 1.0
            out = conv(impulse)[0, 0]
            assert out[seen_by, seen_by] == 32 and out[unseen_by, unseen_by] == 0, row


def test_forward_shapes_and_recurrent_state():
    torch.manual_seed(0)
    network = QNetwork()
    images, onehot = torch.rand(4, 3, 63, 63), previous_tool_onehot(torch.tensor([-1, 0, 11, 12]))
    q_values, (h, c) = network(images, onehot)
    assert q_values.shape == (4, NUM_ACTIONS) and h.shape == c.shape == (4, 50)
    q_again, _ = network(images, onehot, network.initial_state(4))
    torch.testing.assert_close(q_again, q_values)
    q_next, _ = network(images, onehot, (h, c))
    assert not torch.allclose(q_next, q_values)  # the state is used


def test_previous_tool_onehot():
    onehot = previous_tool_onehot(torch.tensor([-1, 0, 5, 11, STOP]))
    assert onehot.shape == (5, 12) and onehot.dtype == torch.float32
    assert onehot.sum(dim=1).tolist() == [0, 1, 1, 1, 0]
    assert onehot[1, 0] == onehot[2, 5] == onehot[3, 11] == 1


@pytest.mark.parametrize(
    ("image", "onehot", "match"),
    [
        (torch.rand(2, 3, 64, 64), torch.zeros(2, 12), "N x 3 x 63 x 63"),
        (torch.rand(3, 63, 63), torch.zeros(1, 12), "N x 3 x 63 x 63"),
        (torch.rand(2, 3, 63, 63), torch.zeros(2, 13), "N x 12"),
        (torch.rand(2, 3, 63, 63), torch.zeros(3, 12), "N x 12 with N = 2"),
    ],
)
def test_forward_rejects_bad_shapes(image, onehot, match):
    with pytest.raises(ValueError, match=match):
        QNetwork()(image, onehot)


# --- Import of the authors' weights ---


def test_import_equals_tf_layout_on_transposed_images(monkeypatch):
    arrays = random_tf_agent()
    assert_matches_tf_layout(network_from_arrays(monkeypatch, arrays), arrays)


def test_official_import_equals_tf_layout_on_transposed_images(official):
    arrays = read_official_agent(official / "models")
    network = QNetwork.from_official(official / "models")
    assert_matches_tf_layout(network, arrays)
    assert torch.equal(network.lstm.bias_hh, torch.zeros(200))


def test_missing_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent/model\.index does not exist"):
        QNetwork.from_official(tmp_path / "absent")
    assert issubclass(CheckpointError, ValueError)


def test_checkpoint_for_another_action_count(monkeypatch):
    shapes = dict(TF_SHAPES)
    shapes["prediction/q/Matrix"], shapes["prediction/q/bias"] = (50, 7), (7,)
    shapes["prediction/prediction_rnn/basic_lstm_cell/kernel"] = (32 + 6 + 50, 200)
    with pytest.raises(CheckpointError, match=r"model\.index: prediction/q/Matrix .* 7 actions; RL-Restore has 13"):
        network_from_arrays(monkeypatch, random_tf_agent(shapes=shapes))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda a: a.pop("prediction/l4/w"), r"missing \['prediction/l4/w'\]"),
        (lambda a: a.update({"prediction/l5/w": np.zeros((5, 5, 24, 24), np.float32)}),
         r"unexpected \['prediction/l5/w'\]"),
        (lambda a: a.update({"prediction/l2/w": np.zeros((3, 3, 32, 24), np.float32)}),
         r"mis-shaped \['prediction/l2/w \(3, 3, 32, 24\) instead of \(5, 5, 32, 24\)'\]"),
        (lambda a: a.update({"prediction/prediction_rnn/basic_lstm_cell/kernel": np.zeros((94, 256), np.float32)}),
         r"basic_lstm_cell/kernel \(94, 256\) instead of \(94, 200\)"),
    ],
)
def test_checkpoint_for_another_architecture(monkeypatch, edit, match):
    arrays = random_tf_agent()
    edit(arrays)
    with pytest.raises(CheckpointError, match=r"some/model/dir/model\.index does not hold the RL-Restore agent.*"
                       + match):
        network_from_arrays(monkeypatch, arrays)


# --- Greedy evaluation ---


class ScriptedNetwork:
    """Stand-in for QNetwork whose greedy actions follow a script (steps x N); records what it was fed."""

    def __init__(self, script: list[list[int]]) -> None:
        self.script = script
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def initial_state(self, batch: int, device=None):
        return torch.zeros(batch, 50), torch.zeros(batch, 50)

    def __call__(self, image, prev_onehot, state):
        self.seen.append((image.clone(), prev_onehot.clone()))
        actions = torch.tensor(self.script[len(self.seen) - 1])
        return torch.nn.functional.one_hot(actions, NUM_ACTIONS).float(), state


def test_greedy_chain_stop_is_final_and_at_most_three_tools():
    torch.manual_seed(0)
    toolbox = Toolbox()
    degraded = torch.rand(4, 3, 63, 63)
    # patch 0 stops at once, 1 after one tool (both would resume); 2 uses 3 tools; 3 stops at step 3.
    network = ScriptedNetwork([[12, 4, 0, 1], [5, 12, 11, 1], [0, 3, 3, 12]])
    chains, images = greedy_chain(network, toolbox, degraded)
    assert chains == [[], [4], [0, 11, 3], [1, 1]]
    assert len(images) == 4 and torch.equal(images[0], degraded)
    assert torch.equal(images[3][0], degraded[0]) and torch.equal(images[3][1], images[1][1])
    assert torch.equal(images[3][3], images[2][3])
    expected = degraded[2:3]
    for tool in chains[2]:
        expected = toolbox.apply(expected, [tool])
    torch.testing.assert_close(images[3][2:3], expected)
    # The network sees the current images and the previous action (none at first; a stop gives zeros).
    assert torch.equal(network.seen[1][0], images[1]) and network.seen[0][1].sum() == 0
    assert network.seen[1][1].argmax(dim=1)[1:].tolist() == [4, 0, 1] and network.seen[1][1][0].sum() == 0
    assert network.seen[2][1].sum(dim=1).tolist() == [0, 0, 1, 1]


def test_greedy_chain_batched_equals_one_by_one():
    torch.manual_seed(0)
    network, toolbox = QNetwork(), Toolbox()
    degraded = torch.rand(3, 3, 63, 63)
    chains, images = greedy_chain(network, toolbox, degraded, max_steps=2)
    assert len(images) == 3
    for n in range(3):
        single_chain, single_images = greedy_chain(network, toolbox, degraded[n : n + 1], max_steps=2)
        assert single_chain == [chains[n]]
        torch.testing.assert_close(single_images[-1], images[-1][n : n + 1], rtol=1e-5, atol=1e-5)


def test_fidelity_official_agent_reproduces_reference_chains(official):
    network = QNetwork.from_official(official / "models")
    toolbox = Toolbox.from_official(official / "toolbox")
    inputs, targets = sample_batches(official)
    chains, images = greedy_chain(network, toolbox, inputs)
    final_psnr = psnr_batch(images[-1], targets)
    for row, (key, (_, reference_chain, reference_psnr, _)) in enumerate(REFERENCE.items()):
        assert [tool + 1 for tool in chains[row]] == reference_chain, key
        assert abs(float(final_psnr[row]) - reference_psnr) < 0.01, (key, float(final_psnr[row]))
