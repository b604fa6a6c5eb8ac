"""A short LSTM-DQN training on one device: agent steps and gradient updates per second.

Runs :func:`agents.lstm_dqn.train` (the ``cpu`` preset, shortened to ``--steps`` agent steps over ``--num-envs``
sub-environments, fresh training patches, the shipped toolbox) in a temporary folder, and writes
``agent_speed.json`` (and the run's ``log.csv``) to ``--out``. The wall time covers the whole run: building
the environment, collecting, the updates and the final checkpoint.

    python -m benchmarks.agent_speed [--device cuda] [--steps 20000] [--num-envs 256] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from agents.lstm_dqn import AGENT_FILE, LOG_FILE, crossings, preset, train
from restore_gym.allocator import retain_freed_memory
from restore_gym.devices import resolve_device
from restore_gym.lstm_dqn import read_agent_file
from restore_gym.records import provenance, write_json_atomic
from restore_gym.toolbox import Toolbox

RESULTS = Path(__file__).parent / "results"


def measure(device: str, steps: int, num_envs: int, out: Path, seed: int = 0) -> dict:
    """Train for ``steps`` agent steps on ``device``; its speed, its config and the run's log (copied to
    ``out``)."""
    if steps < 8 or num_envs < 1:
        raise ValueError(f"need at least 8 steps and one sub-environment, got steps={steps}, num_envs={num_envs}")
    resolved = resolve_device(device)
    cfg = preset("cpu", seed=seed, num_envs=num_envs, total_timesteps=steps, buffer_size=max(steps, 64),
                 learning_starts=min(2_000, steps // 4), exploration_steps=steps, lr_decay_steps=steps,
                 target_network_frequency=max(steps // 10, 1), checkpoint_frequency=steps,
                 log_frequency=max(steps // 10, 1))
    toolbox = Toolbox.pretrained(map_location=resolved)
    with tempfile.TemporaryDirectory(prefix="agent-speed-") as run:
        start = time.perf_counter()
        train(cfg, run, toolbox, resolved, progress=False)
        wall = time.perf_counter() - start
        taken = read_agent_file(Path(run) / AGENT_FILE)["global_step"]
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(run) / LOG_FILE, out / LOG_FILE)
    updates = crossings(cfg.learning_starts, taken, cfg.train_frequency)
    return {"benchmark": "agent_speed", "device": str(resolved), "num_envs": num_envs, "agent_steps": taken,
            "updates": updates, "wall_s": wall, "steps_per_s": taken / wall, "updates_per_s": updates / wall,
            "batch_size": cfg.batch_size, "train_frequency": cfg.train_frequency, "provenance": provenance()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20_000, help="agent steps")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--out", default=str(RESULTS / "agent_speed"))
    args = parser.parse_args(argv)
    retain_freed_memory()  # as agents.lstm_dqn's command line runs
    result = measure(args.device, args.steps, args.num_envs, Path(args.out))
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}))
    write_json_atomic(Path(args.out) / "agent_speed.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
