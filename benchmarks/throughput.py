"""Environment throughput under a random policy, beside the raw throughput of the toolbox alone.

For the single environment and the vector environment at N = 1, 16, 64, 256 (CPU, and CUDA when
present), the benchmark counts environment steps per second and tool applications per second under a
uniformly random policy (actions 0..12, training settings). The raw toolbox runs the same tool mix
(uniform over the 12 tools) on batches of N random patches: the limit the environment's tool work
cannot beat. The bar compares tool applications per second inside the vector environment with the raw
toolbox at N = 64. A fresh interpreter also times ``gym.make`` plus the first ``reset`` after
``import torch``. Writes ``benchmarks/results/throughput.json`` and ``throughput.md``.

Every episode of the train split starts from a freshly degraded patch (the paper's protocol: blur, noise
and JPEG on the patch's 95x95 region), which the raw toolbox never pays for. The benchmark times that
draw alone and counts the episodes each vector run started per tool application; from the two it gives
the ratio the environment could reach if everything but the tools and the fresh patches were free:
``1 / (1 + raw applications/s x episodes per application x seconds per patch)``.

    python -m benchmarks.throughput [--seconds 5] [--sizes 1,16,64,256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import restore_gym  # noqa: F401  (registers RLRestore-v0)
from restore_gym.engine import STOP, PatchSupply
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.toolbox import NUM_TOOLS, Toolbox

RESULTS = Path(__file__).parent / "results"
_STARTUP_SCRIPT = """
import time, torch
start = time.perf_counter()
import gymnasium as gym, restore_gym
env = gym.make("RLRestore-v0")
env.reset(seed=0)
print(time.perf_counter() - start)
"""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single_env_rate(seconds: float, seed: int = 0) -> dict:
    """Steps and tool applications per second of one ``RLRestore-v0`` under a random policy."""
    env = gym.make("RLRestore-v0")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    steps = tools = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        action = int(rng.integers(0, STOP + 1))
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        tools += action != STOP
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed, "tools_per_s": tools / elapsed}


def vector_env_rate(num_envs: int, device: str, seconds: float, seed: int = 0) -> dict:
    """Steps and tool applications per second of the vector environment under a random policy."""
    vec = gym.make_vec("RLRestore-v0", num_envs=num_envs, device=device)
    rng = np.random.default_rng(seed)
    vec.reset(seed=seed)
    for _ in range(3):
        vec.step(rng.integers(0, STOP + 1, num_envs))
    steps, episodes, tools_before = 0, 0, int(vec.batch.tool_counts.sum())
    _sync(vec.device)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, _, _ = vec.step(rng.integers(0, STOP + 1, num_envs))
        steps += num_envs
        episodes += int(terminated.sum())  # each starts a fresh episode at the next step (autoreset)
    _sync(vec.device)
    elapsed = time.perf_counter() - start
    tools = int(vec.batch.tool_counts.sum()) - tools_before
    return {"steps_per_s": steps / elapsed, "tools_per_s": tools / elapsed, "episodes_per_tool": episodes / tools}


def fresh_patch_seconds(count: int = 300, seed: int = 0) -> float:
    """Mean seconds to draw one freshly degraded patch as every new episode of ``RLRestore-v0`` does (built-in
    train split, moderate)."""
    supply, rng = PatchSupply("builtin", "train", "moderate"), np.random.default_rng(seed)
    supply.draw(rng, 0)
    start = time.perf_counter()
    for _ in range(count):
        supply.draw(rng, 0)
    return (time.perf_counter() - start) / count


def ceiling(raw_tools_per_s: float, episodes_per_tool: float, patch_seconds: float) -> float:
    """The env/raw ratio reachable if only tool applications and fresh patches cost time."""
    return 1.0 / (1.0 + raw_tools_per_s * episodes_per_tool * patch_seconds)


def raw_toolbox_rate(toolbox: Toolbox, num: int, device: str, seconds: float, seed: int = 0) -> float:
    """Tool applications per second of the toolbox alone on batches of ``num`` patches, uniform tool mix."""
    rng = np.random.default_rng(seed)
    images = torch.rand(num, 3, 63, 63, device=device)
    toolbox.apply(images, rng.integers(0, NUM_TOOLS, num))
    done = 0
    _sync(images.device)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        toolbox.apply(images, rng.integers(0, NUM_TOOLS, num))
        done += num
    _sync(images.device)
    return done / (time.perf_counter() - start)


def startup_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` fresh interpreters: ``gym.make`` plus the first ``reset`` after ``import torch``."""
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def markdown(result: dict) -> str:
    """The measurements as Markdown tables."""
    lines = [
        f"`gym.make` + first `reset` after `import torch`: {result['startup_s']:.2f} s; "
        f"single environment: {result['single']['steps_per_s']:.0f} steps/s "
        f"({result['single']['tools_per_s']:.0f} tool applications/s); a fresh training patch: "
        f"{1e3 * result['fresh_patch_s']:.2f} ms",
        "",
        "| device | N | env steps/s | env tool applications/s | raw toolbox applications/s | env tools / raw "
        "| new episodes per tool application | ceiling (tools and fresh patches only) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["vector"]:
        lines.append(f"| {row['device']} | {row['num_envs']} | {row['steps_per_s']:.0f} | {row['tools_per_s']:.0f} | "
                     f"{row['raw_tools_per_s']:.0f} | {100 * row['tool_ratio']:.0f}% | "
                     f"{row['episodes_per_tool']:.2f} | {100 * row['ceiling']:.0f}% |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per configuration")
    parser.add_argument("--sizes", default="1,16,64,256", help="vector sizes N")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    toolbox = Toolbox.pretrained()
    result = {"benchmark": "throughput", "seconds": args.seconds, "startup_s": startup_seconds(),
              "fresh_patch_s": fresh_patch_seconds(), "single": single_env_rate(args.seconds), "vector": []}
    for device in devices:
        toolbox.to(device)
        for n in (int(s) for s in args.sizes.split(",")):
            row = {"device": device, "num_envs": n, **vector_env_rate(n, device, args.seconds)}
            row["raw_tools_per_s"] = raw_toolbox_rate(toolbox, n, device, args.seconds)
            row["tool_ratio"] = row["tools_per_s"] / row["raw_tools_per_s"]
            row["ceiling"] = ceiling(row["raw_tools_per_s"], row["episodes_per_tool"], result["fresh_patch_s"])
            result["vector"].append(row)
            print(json.dumps(row))
    result["provenance"] = provenance()
    table = markdown(result)
    print(table)
    write_json_atomic(Path(args.out) / "throughput.json", result)
    write_text_atomic(Path(args.out) / "throughput.md", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
