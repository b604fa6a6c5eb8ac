"""Environment throughput under a random policy, beside the raw throughput of the toolbox alone.

For the single environment and the vector environment at N = 1, 16, 64, 256 (CPU, and CUDA when present;
``--devices``, ``--sizes``), for fresh patches and the fixed pool (``--patches``), with the tools in float32
and in bfloat16 (``--precisions``), the benchmark counts environment steps per second and tool applications
per second under a uniformly random policy (actions 0..12, training settings). The raw toolbox runs the same
tool mix (uniform over the 12 tools, same precision) on batches of N random patches, in slices alternating
with the environment's (so that a busy machine slows both alike): the limit the environment's tool work
cannot beat. A fresh interpreter also times
``gym.make`` plus the first ``reset`` after ``import torch``.

Every episode of the train split starts from a new patch: with ``patches="fresh"`` a freshly degraded one
(blur, noise and JPEG of the patch's 95x95 region), with ``"pool"`` a row of the fixed pool; the raw toolbox
pays for neither. The benchmark times one fresh patch part by part (drawing its place and parameters,
cropping, blur, noise, JPEG, conversion to the device's tensors) along the reference per-patch path
(:func:`restore_gym.degrade.degrade_patch`, which the environment used before) and along the batched path
the environment uses now (:func:`restore_gym.degrade.degrade_batch` on a batch of 32, about what N = 64
starts per step). From a patch's cost and the episodes each run started per tool application it gives the
ratio the environment could reach if everything but the tools and the patches were free:
``1 / (1 + raw applications/s x episodes per application x seconds per patch)``.

The vector environment can be measured with its patch prefetching on, off or as the library builds it
(``--prefetch on,off,default``) and in either autoreset mode (``--autoreset next_step,same_step``: in SAME_STEP
every row acts at every step, in NEXT_STEP a row whose episode ended spends the next step being reset); every
combination asked for gets its row, the floors are judged for each, and the library's default combination is
marked.

bfloat16 is judged on the frozen test sets too: the shipped agent restores each of them with its tools in
float32 and in bfloat16, and the benchmark reports the mean final PSNR of both. Floors (CPU, N = 64, float32,
one run): the pool at least 95% of the raw toolbox's tool applications per second, fresh patches at least 85%.

Writes ``throughput.json`` and ``throughput.md`` to ``--out`` (default ``benchmarks/results``).

    python -m benchmarks.throughput [--seconds 5] [--sizes 1,16,64,256] [--devices cpu,cuda]
        [--patches fresh,pool] [--precisions float32,bfloat16] [--bfloat16-sizes 1,16] [--pool-size 100000]
        [--prefetch default,on,off] [--autoreset next_step,same_step] [--psnr-patches N] [--no-psnr | --psnr-only]
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import restore_gym  # noqa: F401  (registers RLRestore-v0)
from restore_gym.allocator import retain_freed_memory
from restore_gym.data import BuiltinImages, PatchStack, load_test_set, to_nchw
from restore_gym.degrade import (
    DIFFICULTIES,
    MARGIN,
    PATCH_SIZE,
    add_noise,
    add_noise_regions,
    as_float_image,
    blur,
    blur_regions,
    jpeg,
    jpeg_batch,
)
from restore_gym.devices import resolve_device
from restore_gym.engine import PATCH_MODES, PRECISIONS, STOP, PatchSupply, run_tools
from restore_gym.lstm_dqn import LSTMDQNPolicy
from restore_gym.records import provenance, write_json_atomic, write_text_atomic
from restore_gym.rollout import run_one_episode_each
from restore_gym.toolbox import NUM_TOOLS, Toolbox
from restore_gym.vector_env import (
    SUPPORTED_AUTORESET_MODES,
    RLRestoreVectorEnv,
    check_autoreset_mode,
    default_prefetch,
)

RESULTS = Path(__file__).parent / "results"
PARTS: tuple[str, ...] = ("draw", "crop", "blur", "noise", "jpeg", "to_tensor")
PART_BATCH = 32  # fresh patches degraded together in the batched path's timing (N = 64 starts ~36 per step)
FLOORS: dict[str, float] = {"pool": 0.95, "fresh": 0.85}  # CPU, N = 64, float32: env tools / raw
# --prefetch: the vector environment's keyword arguments of each choice ("default": as the library builds it).
PREFETCH_CHOICES: dict[str, dict[str, bool]] = {"default": {}, "on": {"prefetch": True}, "off": {"prefetch": False}}
AUTORESET_CHOICES: tuple[str, ...] = tuple(mode.name.lower() for mode in SUPPORTED_AUTORESET_MODES)
_VECTOR_DEFAULTS = inspect.signature(RLRestoreVectorEnv).parameters
LIBRARY_AUTORESET: str = check_autoreset_mode(_VECTOR_DEFAULTS["autoreset_mode"].default).name.lower()
LIBRARY_DEFAULT: str = f"prefetch on for CUDA and off for the CPU, autoreset {LIBRARY_AUTORESET}"
_STARTUP_SCRIPT = """
import time, torch
start = time.perf_counter()
import gymnasium as gym, restore_gym
env = gym.make("RLRestore-v0")
env.reset(seed=0)
print(time.perf_counter() - start)
"""


def _sync(device: torch.device | str) -> None:
    device = torch.device(device)
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


def interleaved_rates(toolbox: Toolbox, num_envs: int, device: str, seconds: float, seed: int = 0,
                      patches: str = "fresh", precision: str = "float32", pool_size: int = 100_000,
                      rounds: int = 5, prefetch: str = "default", autoreset: str = LIBRARY_AUTORESET) -> dict:
    """The vector environment under a random policy and the raw toolbox beside it, measured in alternating
    slices (``rounds`` of each, ``seconds`` in all for each) so that a change in the machine's speed during the
    run affects both alike: environment steps and tool applications per second, the new episodes started per
    tool application, and the raw toolbox's applications per second on batches of ``num_envs`` random patches
    (uniform tool mix, same precision, through :func:`restore_gym.engine.run_tools` as the environment runs it).
    ``prefetch`` is one of :data:`PREFETCH_CHOICES`, ``autoreset`` the environment's ``autoreset_mode``."""
    vec = gym.make_vec("RLRestore-v0", num_envs=num_envs, device=device, patches=patches, pool_size=pool_size,
                       precision=precision, autoreset_mode=autoreset, **PREFETCH_CHOICES[prefetch])
    rng = np.random.default_rng(seed)
    images = torch.rand(num_envs, 3, PATCH_SIZE, PATCH_SIZE, device=device)
    vec.reset(seed=seed)
    for _ in range(3):
        vec.step(rng.integers(0, STOP + 1, num_envs))
    with torch.inference_mode():
        for _ in range(2):
            run_tools(toolbox, images, rng.integers(0, NUM_TOOLS, num_envs), precision)
    steps = episodes = raw_done = 0
    env_time = raw_time = 0.0
    tools_before = int(vec.batch.tool_counts.sum())
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            _, _, terminated, _, _ = vec.step(rng.integers(0, STOP + 1, num_envs))
            steps += num_envs
            episodes += int(terminated.sum())  # each starts a new episode (at this step or the next)
        _sync(device)
        env_time += time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            while time.perf_counter() - start < seconds / rounds:
                run_tools(toolbox, images, rng.integers(0, NUM_TOOLS, num_envs), precision)
                raw_done += num_envs
            _sync(device)
        raw_time += time.perf_counter() - start
    tools = int(vec.batch.tool_counts.sum()) - tools_before
    vec.close()
    return {"steps_per_s": steps / env_time, "tools_per_s": tools / env_time,
            "episodes_per_tool": episodes / max(tools, 1), "raw_tools_per_s": raw_done / raw_time}


class PartTimer:
    """Seconds spent in each part, summed over ``with timer(part):`` blocks (synchronised on ``device``)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = device
        self.seconds = dict.fromkeys(PARTS, 0.0)

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        _sync(self.device)
        self.seconds[part] += time.perf_counter() - start


def reference_patches(source: BuiltinImages, rngs: Sequence[np.random.Generator], device: str, timer: PartTimer,
                      difficulty: str = "moderate") -> torch.Tensor:
    """The degraded patches of ``rngs`` one at a time along the reference path, as the environment made them
    before (:meth:`ImageSource.sample_patch`, then stacked onto ``device``), timed part by part."""
    scaled, inner, degraded, clean = source.scaled_images(), slice(MARGIN, MARGIN + PATCH_SIZE), [], []
    for rng in rngs:
        with timer("draw"):
            index, top, left, params = source.draw_place(difficulty, rng)
        with timer("crop"):
            region = as_float_image(scaled[index][2][top - MARGIN : top + PATCH_SIZE + MARGIN,
                                                     left - MARGIN : left + PATCH_SIZE + MARGIN])
        with timer("blur"):
            blurred = blur(region, params.blur_sigma)
        with timer("noise"):
            noisy = add_noise(blurred, params.noise_sigma, rng)
        with timer("jpeg"):
            compressed = jpeg(noisy, params.jpeg_quality).astype(np.float32)
        with timer("to_tensor"):
            degraded.append(np.ascontiguousarray(compressed[inner, inner]))
            clean.append(np.ascontiguousarray(region[inner, inner]))
    with timer("to_tensor"):
        out = to_nchw(degraded).to(device)
        to_nchw(clean).to(device)
    return out


def batched_patches(source: BuiltinImages, rngs: Sequence[np.random.Generator], device: str, timer: PartTimer,
                    difficulty: str = "moderate") -> torch.Tensor:
    """The degraded patches of ``rngs`` together along the batched path (:meth:`ImageSource.sample_patches`'s
    steps, :func:`restore_gym.degrade.degrade_batch`'s stages inside), timed part by part."""
    scaled, inner = source.scaled_images(), slice(MARGIN, MARGIN + PATCH_SIZE)
    with timer("draw"):
        places = [source.draw_place(difficulty, rng) for rng in rngs]
        params = [place[3] for place in places]
    with timer("crop"):
        regions = np.stack([scaled[index][2][top - MARGIN : top + PATCH_SIZE + MARGIN,
                                             left - MARGIN : left + PATCH_SIZE + MARGIN]
                            for index, top, left, _ in places])
    with timer("blur"):
        images = blur_regions(regions, [p.blur_sigma for p in params], device)
    with timer("noise"):
        pixels = add_noise_regions(images, [p.noise_sigma for p in params], rngs)
    with timer("jpeg"):
        compressed = jpeg_batch(pixels, [p.jpeg_quality for p in params])
    with timer("to_tensor"):
        stack = PatchStack.from_uint8(compressed[:, inner, inner], regions[:, inner, inner], params,
                                      [("", 1.0, 0, 0)] * len(params), device)
    return stack.degraded


def fresh_patch_parts(device: str = "cpu", batch: int = PART_BATCH, repeats: int = 6, seed: int = 0
                      ) -> dict[str, dict[str, float]]:
    """Seconds per fresh patch of each part and in all, ``"before"`` along the reference per-patch path and
    ``"after"`` along the batched path (``batch`` patches together on ``device``): the same patches both ways
    (checked: a difference is a RuntimeError) and, as a check of the timed steps, those the environment draws."""
    source = BuiltinImages("train")
    timers = {"before": PartTimer(device), "after": PartTimer(device)}
    for repeat in range(repeats + 1):  # the first round warms up and is not counted
        seeds = [[seed, repeat, k] for k in range(batch)]
        counted = {name: timer if repeat else PartTimer(device) for name, timer in timers.items()}
        before = reference_patches(source, [np.random.default_rng(s) for s in seeds], device, counted["before"])
        after = batched_patches(source, [np.random.default_rng(s) for s in seeds], device, counted["after"])
        drawn = source.sample_patches("moderate", [np.random.default_rng(s) for s in seeds], device).degraded
        if not (torch.equal(before, after) and torch.equal(after, drawn)):
            raise RuntimeError("the batched path's patches differ from the reference path's")
    out = {}
    for name, timer in timers.items():
        parts = {part: seconds / (repeats * batch) for part, seconds in timer.seconds.items()}
        out[name] = {**parts, "total": sum(parts.values())}
    return out


def pool_patch_seconds(device: str, pool_size: int, batch: int = PART_BATCH, repeats: int = 20) -> float:
    """Seconds per patch to hand out pool rows (``batch`` at a time) as the environment does."""
    supply = PatchSupply("builtin", "train", "moderate", patches="pool", pool_size=pool_size)
    rngs = [np.random.default_rng([7, k]) for k in range(batch)]
    supply.draw(rngs, [0] * batch, device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        supply.draw(rngs, [0] * batch, device)
    _sync(device)
    return (time.perf_counter() - start) / (repeats * batch)


def ceiling(raw_tools_per_s: float, episodes_per_tool: float, patch_seconds: float) -> float:
    """The env/raw ratio reachable if only tool applications and new patches cost time."""
    return 1.0 / (1.0 + raw_tools_per_s * episodes_per_tool * patch_seconds)


def bfloat16_psnr(device: str = "cpu", max_patches: int | None = None) -> dict[str, dict[str, float]]:
    """Per difficulty: the shipped agent's mean final PSNR on the frozen test set with its tools in float32 and
    in bfloat16, their difference, the largest per-patch difference and the share of patches whose chain
    changed."""
    policy = LSTMDQNPolicy.pretrained(device)
    out = {}
    for difficulty in DIFFICULTIES:
        runs = {}
        for precision in PRECISIONS:
            size = len(load_test_set(difficulty))
            vec = RLRestoreVectorEnv(size if max_patches is None else min(size, max_patches), difficulty, "test",
                                     device=device, precision=precision)
            runs[precision] = run_one_episode_each(vec, policy, seed=0)
        full, half = runs["float32"], runs["bfloat16"]
        difference = half["psnr_final"] - full["psnr_final"]
        out[difficulty] = {
            "patches": len(difference),
            "psnr_float32": float(full["psnr_final"].mean()),
            "psnr_bfloat16": float(half["psnr_final"].mean()),
            "difference_db": float(difference.mean()),
            "max_abs_patch_difference_db": float(np.abs(difference).max()),
            "chains_changed": float(np.mean([a != b for a, b in zip(full["chains"], half["chains"])])),
        }
    return out


def startup_seconds(repeats: int = 3) -> float:
    """Best of ``repeats`` fresh interpreters: ``gym.make`` plus the first ``reset`` after ``import torch``."""
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def is_library_default(row: dict) -> bool:
    """Whether ``row`` measured the vector environment as the library builds it (its prefetching and autoreset)."""
    library = default_prefetch(row["device"])
    prefetch = PREFETCH_CHOICES[row["prefetch"]].get("prefetch", library)
    return prefetch == library and row["autoreset"] == LIBRARY_AUTORESET


def floors(rows: list[dict]) -> list[dict]:
    """The floors that this run's rows can judge (CPU, N = 64, float32): per patch mode, prefetching and autoreset
    mode measured, the ratio, its floor, whether it met it and whether the row is the library's default."""
    judged = [row for row in rows if row["patches"] in FLOORS
              and (row["device"], row["num_envs"], row["precision"]) == ("cpu", 64, "float32")]
    return [{"patches": row["patches"], "prefetch": row["prefetch"], "autoreset": row["autoreset"],
             "library_default": is_library_default(row), "ratio": row["tool_ratio"], "floor": FLOORS[row["patches"]],
             "met": row["tool_ratio"] >= FLOORS[row["patches"]]} for row in judged]


def speedups(rows: list[dict]) -> list[dict]:
    """bfloat16 over float32 per device, N, patch mode, prefetching and autoreset mode: environment and raw toolbox
    tool applications/s."""
    index = {(r["device"], r["num_envs"], r["patches"], r["prefetch"], r["autoreset"], r["precision"]): r
             for r in rows}
    out = []
    for (device, n, patches, prefetch, autoreset, precision), half in index.items():
        full = index.get((device, n, patches, prefetch, autoreset, "float32"))
        if precision == "bfloat16" and full is not None:
            out.append({"device": device, "num_envs": n, "patches": patches, "prefetch": prefetch,
                        "autoreset": autoreset, "env": half["tools_per_s"] / full["tools_per_s"],
                        "raw": half["raw_tools_per_s"] / full["raw_tools_per_s"]})
    return out


def markdown(result: dict) -> str:
    """The measurements as Markdown tables."""
    parts = result["fresh_patch_parts"]
    lines = [
        f"`gym.make` + first `reset` after `import torch`: {result['startup_s']:.2f} s; "
        f"single environment: {result['single']['steps_per_s']:.0f} steps/s "
        f"({result['single']['tools_per_s']:.0f} tool applications/s); a fresh training patch: "
        f"{1e3 * result['fresh_patch_s']:.2f} ms (batched; {1e3 * parts['before']['total']:.2f} ms along the "
        f"reference per-patch path)"
        + ("" if result["pool_patch_s"] is None else f"; a pool patch: {1e3 * result['pool_patch_s']:.3f} ms"),
        "",
        "| device | N | patches | precision | prefetch | autoreset | env steps/s | env tool applications/s "
        "| raw toolbox applications/s | env tools / raw | new episodes per tool application "
        "| ceiling (tools and new patches only) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["vector"]:
        lines.append(f"| {row['device']} | {row['num_envs']} | {row['patches']} | {row['precision']} | "
                     f"{row['prefetch']} | {row['autoreset']} | "
                     f"{row['steps_per_s']:.0f} | {row['tools_per_s']:.0f} | {row['raw_tools_per_s']:.0f} | "
                     f"{100 * row['tool_ratio']:.0f}% | {row['episodes_per_tool']:.2f} | {100 * row['ceiling']:.0f}% |")
    if result["floors"]:
        lines += ["", f"Floors (CPU, N = 64, float32; * marks the library's default, {LIBRARY_DEFAULT}): " + "; ".join(
                      f"{f['patches']}, prefetch {f['prefetch']}, {f['autoreset']}{'*' if f['library_default'] else ''}"
                      f" {100 * f['ratio']:.1f}% (floor {100 * f['floor']:.0f}%: {'met' if f['met'] else 'MISSED'})"
                      for f in result["floors"])]
    lines += ["", f"One fresh patch, part by part (ms per patch; batched: {result['part_batch']} patches together on "
              f"{result['part_device']}):", "",
              "| part | reference per-patch path | batched path |", "|---|---|---|"]
    for part in (*PARTS, "total"):
        lines.append(f"| {part} | {1e3 * parts['before'][part]:.3f} | {1e3 * parts['after'][part]:.3f} |")
    if result["speedups"]:
        lines += ["", "bfloat16 over float32 (tool applications/s):", "",
                  "| device | N | patches | prefetch | autoreset | environment | raw toolbox |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['device']} | {s['num_envs']} | {s['patches']} | {s['prefetch']} | {s['autoreset']} | "
                  f"{s['env']:.2f}x | {s['raw']:.2f}x |" for s in result["speedups"]]
    if result["bfloat16_psnr"]:
        lines += ["", f"The shipped agent on the frozen test sets ({result['bfloat16_psnr_device']}), tools in float32 "
                  "and in bfloat16:", "",
                  "| test set | patches | PSNR float32 | PSNR bfloat16 | difference | largest per-patch difference "
                  "| chains changed |", "|---|---|---|---|---|---|---|"]
        for difficulty, r in result["bfloat16_psnr"].items():
            lines.append(f"| {difficulty} | {r['patches']} | {r['psnr_float32']:.3f} | {r['psnr_bfloat16']:.3f} | "
                         f"{r['difference_db']:+.4f} dB | {r['max_abs_patch_difference_db']:.3f} dB | "
                         f"{100 * r['chains_changed']:.1f}% |")
    return "\n".join(lines) + "\n"


def _choices(text: str, allowed: Sequence[str], name: str) -> list[str]:
    values = [v for v in text.split(",") if v]
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise SystemExit(f"--{name}: expected a comma-separated subset of {', '.join(allowed)}, got {text!r}")
    return values


def _write(result: dict, out: Path) -> None:
    table = markdown(result)
    print(table)
    write_json_atomic(out / "throughput.json", result)
    write_text_atomic(out / "throughput.md", table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per configuration")
    parser.add_argument("--sizes", default="1,16,64,256", help="vector sizes N")
    parser.add_argument("--bfloat16-sizes", help="vector sizes N of the bfloat16 rows (default: --sizes)")
    parser.add_argument("--devices", help="comma-separated devices (default: cpu, and cuda when present)")
    parser.add_argument("--patches", default=",".join(PATCH_MODES), help="patch modes: fresh, pool")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="tool precisions: float32, bfloat16")
    parser.add_argument("--pool-size", type=int, default=100_000, help="patches in the pool (built once, cached)")
    parser.add_argument("--prefetch", default="default", help="the vector environment's patch prefetching: on, "
                        f"off, default (as the library builds it; its default is {LIBRARY_DEFAULT})")
    parser.add_argument("--autoreset", default=LIBRARY_AUTORESET, help="the vector environment's autoreset modes: "
                        f"{', '.join(AUTORESET_CHOICES)} (default: the library's)")
    parser.add_argument("--psnr-patches", type=int, help="only the first N patches of each test set for the "
                        "bfloat16 PSNR comparison (default: all)")
    psnr = parser.add_mutually_exclusive_group()
    psnr.add_argument("--no-psnr", action="store_true", help="leave out the bfloat16 PSNR comparison")
    psnr.add_argument("--psnr-only", action="store_true", help="add the bfloat16 PSNR comparison (which needs no "
                      "quiet machine) to the results already in --out")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    retain_freed_memory()  # as the training and evaluation commands run
    out = Path(args.out)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        resolve_device(device)
    if args.psnr_only:
        result = json.loads((out / "throughput.json").read_text())
        if any("prefetch" not in row or "autoreset" not in row for row in result["vector"]):
            raise SystemExit(f"{out / 'throughput.json'} predates the prefetch and autoreset columns: run the "
                             "benchmark again (without --psnr-only)")
        result["bfloat16_psnr_device"] = devices[-1]
        result["bfloat16_psnr"] = bfloat16_psnr(devices[-1], args.psnr_patches)
        _write(result, out)
        return 0
    modes = _choices(args.patches, PATCH_MODES, "patches")
    precisions = _choices(args.precisions, PRECISIONS, "precisions")
    prefetches = _choices(args.prefetch, tuple(PREFETCH_CHOICES), "prefetch")
    autoresets = _choices(args.autoreset, AUTORESET_CHOICES, "autoreset")
    sizes = {"float32": [int(n) for n in args.sizes.split(",")]}
    sizes["bfloat16"] = [int(n) for n in args.bfloat16_sizes.split(",")] if args.bfloat16_sizes else sizes["float32"]
    toolbox = Toolbox.pretrained()
    parts_device = devices[-1]  # the batched path on the fastest device asked for
    parts = fresh_patch_parts(parts_device)
    result = {"benchmark": "throughput", "seconds": args.seconds, "pool_size": args.pool_size,
              "startup_s": startup_seconds(), "fresh_patch_parts": parts, "part_batch": PART_BATCH,
              "part_device": parts_device, "fresh_patch_s": parts["after"]["total"],
              "pool_patch_s": pool_patch_seconds(parts_device, args.pool_size) if "pool" in modes else None,
              "single": single_env_rate(args.seconds), "vector": [],
              "library_default": {"prefetch": {"cpu": default_prefetch("cpu"), "cuda": default_prefetch("cuda")},
                                  "autoreset": LIBRARY_AUTORESET}}
    patch_seconds = {"fresh": result["fresh_patch_s"], "pool": result["pool_patch_s"]}
    for device in devices:
        toolbox.to(device)
        for n in sorted({n for precision in precisions for n in sizes[precision]}):
            for precision in (p for p in precisions if n in sizes[p]):
                for mode, prefetch, autoreset in itertools.product(modes, prefetches, autoresets):
                    row = {"device": device, "num_envs": n, "patches": mode, "precision": precision,
                           "prefetch": prefetch, "autoreset": autoreset,
                           **interleaved_rates(toolbox, n, device, args.seconds, patches=mode, precision=precision,
                                               pool_size=args.pool_size, prefetch=prefetch, autoreset=autoreset)}
                    row["tool_ratio"] = row["tools_per_s"] / row["raw_tools_per_s"]
                    row["ceiling"] = ceiling(row["raw_tools_per_s"], row["episodes_per_tool"], patch_seconds[mode])
                    result["vector"].append(row)
                    print(json.dumps(row), flush=True)
    result["floors"] = floors(result["vector"])
    result["speedups"] = speedups(result["vector"])
    result["bfloat16_psnr_device"] = devices[-1]
    with_psnr = "bfloat16" in precisions and not args.no_psnr
    result["bfloat16_psnr"] = bfloat16_psnr(devices[-1], args.psnr_patches) if with_psnr else {}
    result["provenance"] = provenance()
    _write(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
