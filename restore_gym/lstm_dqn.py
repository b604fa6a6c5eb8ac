"""The RL-Restore agent (Yu et al., CVPR 2018) for inference: its recurrent Q-network, the import of the
authors' released weights, the greedy policy and the agent file format.

Actions 0..11 apply tools 1..12 of the toolbox; action 12 stops; an episode applies at most 3 tools.
Images are N x 3 x 63 x 63 float tensors, RGB in [0, 1] (tool outputs may leave that range a little), in
their on-disk orientation, exactly as :class:`restore_gym.toolbox.Toolbox` takes them. An agent file is a
``torch.save`` dict (``architecture``, ``num_actions``, ``q_network``, ``config``, ``toolbox``,
``global_step``); training checkpoints hold the same keys and more. The agent's DQN training is the
script ``agents/lstm_dqn.py``.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from restore_gym.degrade import PATCH_SIZE
from restore_gym.devices import resolve_device
from restore_gym.engine import MAX_TOOLS, NUM_ACTIONS, STOP
from restore_gym.official import OFFICIAL, converted_file
from restore_gym.records import load_torch_file
from restore_gym.tf_checkpoint import CheckpointError, read_official_agent
from restore_gym.toolbox import NUM_TOOLS, Toolbox

FEATURES = 32  # FC output fed to the LSTM along with the previous tool
LSTM_UNITS = 50
FLAT_GRID = 4  # 63 -> 32 -> 16 -> 8 -> 4 after four stride-2 convolutions
FLAT_CHANNELS = 24

# The authors' TensorFlow variables (kernels HWIO, matrices input x output) and their shapes.
TF_SHAPES: dict[str, tuple[int, ...]] = {
    "prediction/l1/w": (9, 9, 3, 32),
    "prediction/l1/biases": (32,),
    "prediction/l2/w": (5, 5, 32, 24),
    "prediction/l2/biases": (24,),
    "prediction/l3/w": (5, 5, 24, 24),
    "prediction/l3/biases": (24,),
    "prediction/l4/w": (5, 5, 24, 24),
    "prediction/l4/biases": (24,),
    "prediction/l7/Matrix": (FLAT_GRID * FLAT_GRID * FLAT_CHANNELS, FEATURES),
    "prediction/l7/bias": (FEATURES,),
    "prediction/prediction_rnn/basic_lstm_cell/kernel": (FEATURES + NUM_TOOLS + LSTM_UNITS, 4 * LSTM_UNITS),
    "prediction/prediction_rnn/basic_lstm_cell/bias": (4 * LSTM_UNITS,),
    "prediction/q/Matrix": (LSTM_UNITS, NUM_ACTIONS),
    "prediction/q/bias": (NUM_ACTIONS,),
}
TF_FORGET_BIAS = 1.0  # BasicLSTMCell adds this to the forget gate at run time
# TF BasicLSTMCell gate blocks are (i, j, f, o) with j the candidate; nn.LSTMCell's are (i, f, g, o).
TF_TO_TORCH_GATES = (0, 2, 1, 3)

LSTMState = tuple[torch.Tensor, torch.Tensor]


class TFSameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's 'SAME' zero padding, which is asymmetric for even totals.

    Per spatial axis: out = ceil(in / stride), pad_total = max((out - 1) * stride + kernel - in, 0),
    pad_total // 2 before and the rest after (63 -> 32 with 9x9/2 pads 4 + 4; 32 -> 16 with 5x5/2 pads 1 + 2).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
            out = -(-size // stride)
            total = max((out - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad wants (left, right, top, bottom)
        return super().forward(F.pad(x, pads))


class QNetwork(nn.Module):
    """The paper's agent: 4 strided convs, FC, LSTM over (features, previous tool), FC to 13 Q-values.

    conv 9x9/2 3->32, conv 5x5/2 32->24, conv 5x5/2 24->24, conv 5x5/2 24->24 (ReLU each, TF SAME padding),
    flatten 4x4x24 = 384 in NHWC order (h, w, c), FC 384->32 + ReLU, concatenated with the 12-dim one-hot of
    the previous tool (zeros at the first step and after a stop), LSTM cell of 50 units, FC 50->13.
    Submodules are named after the authors' TensorFlow scopes (l1..l4, l7, q).

    Parameters: 87,863 as TensorFlow counts them; ``nn.LSTMCell`` has two biases (``bias_ih``, ``bias_hh``)
    where BasicLSTMCell has one, so PyTorch counts 87,863 + 200 = 88,063. Imported weights put the TF bias
    in ``bias_ih`` and zeros in ``bias_hh``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.l1 = TFSameConv2d(3, 32, 9, stride=2)
        self.l2 = TFSameConv2d(32, 24, 5, stride=2)
        self.l3 = TFSameConv2d(24, 24, 5, stride=2)
        self.l4 = TFSameConv2d(24, FLAT_CHANNELS, 5, stride=2)
        self.l7 = nn.Linear(FLAT_GRID * FLAT_GRID * FLAT_CHANNELS, FEATURES)
        self.lstm = nn.LSTMCell(FEATURES + NUM_TOOLS, LSTM_UNITS)
        self.q = nn.Linear(LSTM_UNITS, NUM_ACTIONS)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> LSTMState:
        """Zero LSTM state (h, c), each ``batch`` x 50, on ``device`` (default: the network's)."""
        device = self.q.weight.device if device is None else device
        zeros = torch.zeros(batch, LSTM_UNITS, device=device)
        return zeros, zeros.clone()

    def forward(
        self, image: torch.Tensor, prev_onehot: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Q-values (N x 13) and the new LSTM state for one step.

        ``image``: N x 3 x 63 x 63 float (on-disk orientation, RGB, about [0, 1]); ``prev_onehot``: N x 12
        one-hot of the previous tool (see :func:`previous_tool_onehot`); ``state``: (h, c) or None for zeros.
        """
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, PATCH_SIZE, PATCH_SIZE):
            raise ValueError(f"image must be N x 3 x {PATCH_SIZE} x {PATCH_SIZE}, got shape {tuple(image.shape)}")
        if tuple(prev_onehot.shape) != (image.shape[0], NUM_TOOLS):
            raise ValueError(f"prev_onehot must be N x {NUM_TOOLS} with N = {image.shape[0]}, "
                             f"got shape {tuple(prev_onehot.shape)}")
        x = F.relu(self.l1(image))
        x = F.relu(self.l2(x))
        x = F.relu(self.l3(x))
        x = F.relu(self.l4(x))
        x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as TensorFlow flattens
        x = F.relu(self.l7(x))
        if state is None:
            state = self.initial_state(image.shape[0], image.device)
        h, c = self.lstm(torch.cat([x, prev_onehot.to(x.dtype)], dim=1), state)
        return self.q(h), (h, c)

    @classmethod
    def from_official(cls, model_dir: str | os.PathLike) -> QNetwork:
        """Load the authors' released agent (``model_dir/model.index`` + data) as a network for on-disk images.

        The released agent was trained on transposed patches (H and W swapped). The import transposes the
        conv kernels' spatial axes and reorders the FC rows of the (transposed) 4x4 grid, so this network on
        an image equals the released one on the transposed image. LSTM gates are reordered from TF's
        (i, j, f, o) to PyTorch's (i, f, g, o) and the forget bias of +1 is folded into ``lstm.bias_ih``.
        Raises :class:`CheckpointError` (a ValueError) naming the file and variables if the folder is
        missing or holds another architecture or action count.
        """
        arrays = read_official_agent(model_dir)
        _check_tf_agent(arrays, str(Path(model_dir) / "model.index"))
        network = cls()
        network.load_state_dict(_state_dict_from_tf(arrays))
        return network


def _check_tf_agent(arrays: dict[str, np.ndarray], where: str) -> None:
    """CheckpointError naming ``where`` unless ``arrays`` holds exactly the agent's variables and shapes."""
    q_shape = arrays.get("prediction/q/Matrix", np.empty(0)).shape
    if len(q_shape) == 2 and q_shape[1] != NUM_ACTIONS:
        raise CheckpointError(f"{where}: prediction/q/Matrix has shape {q_shape}, an agent with {q_shape[1]} "
                              f"actions; RL-Restore has {NUM_ACTIONS} ({NUM_TOOLS} tools + stop)")
    missing = sorted(TF_SHAPES.keys() - arrays.keys())
    unexpected = sorted(arrays.keys() - TF_SHAPES.keys())
    shapes = [f"{name} {arrays[name].shape} instead of {shape}"
              for name, shape in TF_SHAPES.items() if name in arrays and arrays[name].shape != shape]
    problems = [f"{label} {items}" for label, items in
                (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)) if items]
    if problems:
        raise CheckpointError(f"{where} does not hold the RL-Restore agent architecture: {'; '.join(problems)}")


def _state_dict_from_tf(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert the authors' variables (checked by :func:`_check_tf_agent`) to a :class:`QNetwork` state dict."""

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def gates(array: np.ndarray) -> np.ndarray:  # reorder the 4 gate blocks of the leading axis
        return np.concatenate([array[k * LSTM_UNITS : (k + 1) * LSTM_UNITS] for k in TF_TO_TORCH_GATES])

    state = {}
    for layer in ("l1", "l2", "l3", "l4"):
        # HWIO -> O, I, W, H: PyTorch's OIHW with the spatial axes swapped (the image transpose).
        state[f"{layer}.weight"] = tensor(arrays[f"prediction/{layer}/w"].transpose(3, 2, 1, 0))
        state[f"{layer}.bias"] = tensor(arrays[f"prediction/{layer}/biases"])
    # TF rows are indexed (h, w, c) of the transposed grid, i.e. (w, h, c) of ours: swap the grid axes.
    matrix = arrays["prediction/l7/Matrix"].reshape(FLAT_GRID, FLAT_GRID, FLAT_CHANNELS, FEATURES)
    state["l7.weight"] = tensor(matrix.transpose(1, 0, 2, 3).reshape(-1, FEATURES).T)
    state["l7.bias"] = tensor(arrays["prediction/l7/bias"])
    kernel = arrays["prediction/prediction_rnn/basic_lstm_cell/kernel"]  # rows: [l7 features, one-hot, h]
    bias = arrays["prediction/prediction_rnn/basic_lstm_cell/bias"].copy()
    bias[2 * LSTM_UNITS : 3 * LSTM_UNITS] += TF_FORGET_BIAS  # f is TF's third block
    state["lstm.weight_ih"] = tensor(gates(kernel[: FEATURES + NUM_TOOLS].T))
    state["lstm.weight_hh"] = tensor(gates(kernel[FEATURES + NUM_TOOLS :].T))
    state["lstm.bias_ih"] = tensor(gates(bias))
    state["lstm.bias_hh"] = torch.zeros(4 * LSTM_UNITS)
    state["q.weight"] = tensor(arrays["prediction/q/Matrix"].T)
    state["q.bias"] = tensor(arrays["prediction/q/bias"])
    return state


def previous_tool_onehot(actions: torch.Tensor) -> torch.Tensor:
    """N x 12 float one-hot of the previous actions (N,): tools 0..11 set their bit; -1 (none yet) and 12
    (stop) give all zeros, as in the authors' code."""
    tools = torch.where((actions >= 0) & (actions < NUM_TOOLS), actions, NUM_TOOLS)
    return F.one_hot(tools.long(), NUM_TOOLS + 1)[:, :NUM_TOOLS].float()


@torch.inference_mode()
def greedy_chain(
    network: QNetwork, toolbox: Toolbox, degraded: torch.Tensor, max_steps: int = MAX_TOOLS
) -> tuple[list[list[int]], list[torch.Tensor]]:
    """Restore a batch greedily, as the authors evaluate: per patch, up to ``max_steps`` tools until stop.

    ``degraded`` is N x 3 x 63 x 63 on the network's and toolbox's device. Each step takes the argmax
    Q-value; a stopped patch stays stopped and unchanged. Tool outputs are not clipped. Returns the tool
    chain of each patch (0-based tool ids, the stop excluded) and ``max_steps + 1`` batches of images:
    the input, then the state after each step.
    """
    batch = degraded.shape[0]
    state = network.initial_state(batch, degraded.device)
    previous = torch.full((batch,), -1, dtype=torch.long, device=degraded.device)
    stopped = torch.zeros(batch, dtype=torch.bool, device=degraded.device)
    chains: list[list[int]] = [[] for _ in range(batch)]
    images = [degraded]
    for _ in range(max_steps):
        q_values, state = network(images[-1], previous_tool_onehot(previous), state)
        actions = torch.where(stopped, STOP, q_values.argmax(dim=1))
        stopped |= actions == STOP
        active = torch.nonzero(~stopped).squeeze(1)
        current = images[-1].clone()
        if active.numel():
            current[active] = toolbox.apply(current[active], actions[active])
        for n in active.tolist():
            chains[n].append(int(actions[n]))
        images.append(current)
        previous = actions
    return chains, images



# ---- Acting -----------------------------------------------------------------------------------------


class LSTMDQNPolicy:
    """A :class:`QNetwork` as a policy of :mod:`restore_gym.rollout`: ``policy(env, obs) -> actions``.

    Greedy over the Q-values (epsilon-greedy when ``epsilon`` > 0, drawing from ``rng``). Keeps one LSTM
    state per sub-environment, reset on rows whose ``obs["step"]`` is 0. Uses the dict observation only
    (image, previous tool, step); the environment ends episodes on stop and after the third tool.
    """

    def __init__(self, network: QNetwork, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> None:
        self.network = network
        self.epsilon = epsilon
        self.rng = rng if rng is not None else np.random.default_rng()
        self.state: LSTMState | None = None

    @classmethod
    def from_official(cls, model_dir: str | os.PathLike) -> LSTMDQNPolicy:
        """The authors' released agent (``model_dir/model.index``); see :meth:`QNetwork.from_official`."""
        return cls(QNetwork.from_official(model_dir))

    @classmethod
    def resolve(cls, spec: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> LSTMDQNPolicy:
        """The agent a user names: None or ``"shipped"`` (:meth:`pretrained`), ``"official"`` (the authors'
        agent once converted, :mod:`restore_gym.official`) or an agent file or training checkpoint."""
        if spec is None or spec == "shipped":
            return cls.pretrained(device)
        return cls.load(converted_file("agent") if spec == OFFICIAL else spec, device)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> LSTMDQNPolicy:
        """A trained agent from an agent file or a training checkpoint (see :func:`load_agent`)."""
        return cls(load_agent(path, device)[0])

    @classmethod
    def pretrained(cls, device: str | torch.device = "cpu") -> LSTMDQNPolicy:
        """The agent shipped with the package (see :func:`load_pretrained_agent`)."""
        return cls(load_pretrained_agent(device)[0])

    @torch.inference_mode()
    def __call__(self, env: Any, observation: dict[str, np.ndarray]) -> np.ndarray:
        device = self.network.q.weight.device
        image = torch.as_tensor(observation["image"], device=device)
        previous = torch.as_tensor(observation["previous_tool"], device=device)
        new = torch.as_tensor(observation["step"] == 0, device=device).unsqueeze(1)
        if self.state is None or self.state[0].shape[0] != image.shape[0]:
            self.state = self.network.initial_state(image.shape[0], device)
        state = (torch.where(new, 0.0, self.state[0]), torch.where(new, 0.0, self.state[1]))
        q_values, self.state = self.network(image, previous, state)
        actions = q_values.argmax(dim=1).cpu().numpy()
        if self.epsilon > 0:
            explore = self.rng.random(len(actions)) < self.epsilon
            actions = np.where(explore, self.rng.integers(0, NUM_ACTIONS, len(actions)), actions)
        return actions



# ---- Files ------------------------------------------------------------------------------------------

AGENT_ARCHITECTURE = "rl-restore-lstm-dqn-v1"
PRETRAINED_AGENT_FILE = "lstm-dqn-moderate.pt"  # in restore_gym/weights/

def toolbox_info(toolbox: Toolbox) -> dict[str, Any]:
    """What an agent file records of the toolbox it was trained with."""
    return {"version": toolbox.version, "metadata": dict(toolbox.metadata)}


def agent_payload(network: QNetwork, config: dict[str, Any], toolbox: Toolbox, step: int) -> dict[str, Any]:
    """The fields shared by agent files and checkpoints (all that :func:`load_agent` reads); ``config`` is the
    training config as a dict."""
    return {
        "architecture": AGENT_ARCHITECTURE,
        "num_actions": NUM_ACTIONS,
        "q_network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "config": dict(config),
        "toolbox": toolbox_info(toolbox),
        "global_step": step,
    }


def read_agent_file(path: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of an agent file or checkpoint; :class:`CheckpointError` (a ValueError) naming the
    file if it is missing, unreadable, or holds another architecture or action count."""
    path = Path(path)
    payload = load_torch_file(path, "agent file", CheckpointError, CheckpointError)
    if not isinstance(payload, dict) or not {"architecture", "num_actions", "q_network"} <= payload.keys():
        raise CheckpointError(f"{path} is not an agent file: expected architecture, num_actions and q_network, "
                              "as written by the agent's training")
    if payload["architecture"] != AGENT_ARCHITECTURE:
        raise CheckpointError(f"{path} holds architecture {payload['architecture']!r}, expected {AGENT_ARCHITECTURE!r}")
    if payload["num_actions"] != NUM_ACTIONS:
        raise CheckpointError(f"{path} holds an agent with {payload['num_actions']} actions; RL-Restore has "
                              f"{NUM_ACTIONS} ({NUM_TOOLS} tools + stop)")
    expected = {k: tuple(v.shape) for k, v in QNetwork().state_dict().items()}
    found = {k: tuple(v.shape) for k, v in payload["q_network"].items()}
    if found != expected:
        differences = sorted(f"{k}: {found.get(k)} instead of {expected.get(k)}" for k in expected.keys() | found.keys()
                             if found.get(k) != expected.get(k))
        raise CheckpointError(f"{path} does not match the {AGENT_ARCHITECTURE} Q-network: {'; '.join(differences)}")
    return payload


def load_agent(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[QNetwork, dict[str, Any]]:
    """The Q-network of an agent file or training checkpoint, on ``device``, and the file's other fields
    (config, toolbox version and metadata, global_step)."""
    payload = read_agent_file(path)
    network = QNetwork()
    network.load_state_dict(payload.pop("q_network"))
    return network.to(resolve_device(device)), payload


def load_pretrained_agent(device: str | torch.device = "cpu") -> tuple[QNetwork, dict[str, Any]]:
    """The agent shipped in ``restore_gym/weights/`` (trained on moderate against ``Toolbox.pretrained()``;
    model card in the README), as :func:`load_agent` returns it. Needs no network."""
    resource = importlib.resources.files("restore_gym") / "weights" / PRETRAINED_AGENT_FILE
    with importlib.resources.as_file(resource) as path:
        return load_agent(path, device)

