"""The main job of the quick start: what the shipped agent does, on test patches and on a whole photo.

1. The first ``patches`` patches (default 64; 164 for all) of the frozen test set of ``difficulty`` (moderate;
   patches of the built-in test photos): the input, the best single tool (chosen on validation patches of the
   train split), the shipped agent and the greedy oracle (which looks at the clean patch), with PSNR, SSIM and
   gain, and the agent's most frequent chains.
   ``DIR/patches.png`` shows some of the patches: input | best tool | agent | greedy oracle | clean.
2. A whole built-in test photo (chelsea, at 2/3 of its size to keep the demo short), degraded with one draw of
   the paper's protocol, restored by the shipped agent (:func:`restore_gym.whole_image.restore_image`).
   ``DIR/photo.png`` is input | restored | clean; ``DIR/photo-restored.png`` the restored photo alone.

``DIR/demo.json`` records the numbers. Everything runs on the CPU with the shipped weights.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import NamedPolicy, make_best_tool, make_greedy_oracle
from restore_gym.data import BuiltinImages, load_test_set, rescale
from restore_gym.degrade import degrade, sample_params
from restore_gym.evaluation import run_policy
from restore_gym.image_io import side_by_side, write_photo, write_png
from restore_gym.lstm_dqn import LSTMDQNPolicy
from restore_gym.metrics import psnr_ssim
from restore_gym.records import write_json_atomic
from restore_gym.toolbox import Toolbox
from restore_gym.whole_image import chain_names, restore_image

DEMO_PATCHES = 64
PHOTO = "chelsea"
PHOTO_SCALE = 2 / 3
PHOTO_SEED = 20180623
SHOWN_PATCHES = 6
ZOOM = 3
COLUMNS = ("input", "best tool", "agent", "greedy oracle", "clean")


def _patch_picture(columns: list[np.ndarray], indices: list[int]) -> Image.Image:
    """Rows of patches (one per index), one column per method, zoomed, under a header naming the columns."""
    rows = [side_by_side([np.kron(column[i], np.ones((ZOOM, ZOOM, 1))) for column in columns], gap=6)
            for i in indices]
    gap = np.full((6, rows[0].shape[1], 3), 255, dtype=np.uint8)
    body = np.concatenate([part for row in rows for part in (row, gap)][:-1])
    picture = Image.new("RGB", (body.shape[1], body.shape[0] + 20), "white")
    picture.paste(Image.fromarray(body), (0, 20))
    draw = ImageDraw.Draw(picture)
    for k, name in enumerate(COLUMNS):
        draw.text((k * (63 * ZOOM + 6) + 4, 4), name, fill="black")
    return picture


def _patches(difficulty: str, patches: int, toolbox: Toolbox, out: Path) -> dict:
    """Part 1 of the module docstring; returns its numbers."""
    policies = {"best tool": make_best_tool(toolbox, difficulty),
                "agent": NamedPolicy("lstm-dqn", LSTMDQNPolicy.pretrained()),
                "greedy oracle": make_greedy_oracle(toolbox, difficulty)}
    runs = {name: run_policy(policy, difficulty, toolbox, max_patches=patches) for name, policy in policies.items()}
    first = next(iter(runs.values())).report["metrics"]
    test_set = load_test_set(difficulty)
    used = min(patches, len(test_set))
    print(f"{difficulty} test set, {used} of its {len(test_set)} patches: PSNR (dB), SSIM, gain over the input")
    print(f"{'':<14} {'PSNR':>7} {'SSIM':>7} {'gain':>7} {'tools':>6}")
    print(f"{'input':<14} {first['psnr_input']:>7.3f} {first['ssim_input']:>7.4f} {0:>+7.3f} {0:>6.2f}")
    table = {}
    for name, evaluation in runs.items():
        m = evaluation.report["metrics"]
        table[name] = {"psnr": m["psnr"], "ssim": m["ssim"], "gain": m["psnr_gain"], "tools": m["chain_length"]}
        print(f"{name:<14} {m['psnr']:>7.3f} {m['ssim']:>7.4f} {m['psnr_gain']:>+7.3f} {m['chain_length']:>6.2f}")
    chains = Counter(tuple(chain) for chain in runs["agent"].report["per_patch"]["chain"])
    common = [{"chain": chain_names(list(chain)), "patches": n} for chain, n in chains.most_common(5)]
    print("the agent's most frequent chains: " + "; ".join(f"{c['chain']} ({c['patches']})" for c in common))
    indices = np.linspace(0, used - 1, SHOWN_PATCHES).round().astype(int).tolist()
    columns = [test_set.degraded, *(runs[name].images for name in policies), test_set.clean]
    write_png(out / "patches.png", _patch_picture(columns, indices))
    return {"patches": used, "test_set_patches": len(test_set),
            "input": {"psnr": first["psnr_input"], "ssim": first["ssim_input"]}, **table, "agent_chains": common,
            "shown_patches": indices}


def _photo(difficulty: str, toolbox: Toolbox, mode: str, out: Path) -> dict:
    """Part 2 of the module docstring; returns its numbers."""
    clean = rescale(dict(BuiltinImages("test").images())[PHOTO], PHOTO_SCALE).astype(np.float32) / 255.0
    rng = np.random.default_rng(PHOTO_SEED)
    params = sample_params(difficulty, rng)
    degraded = degrade(clean, params, rng)
    result = restore_image(degraded, None, toolbox, mode)
    (psnr_in, ssim_in), (psnr_out, ssim_out) = psnr_ssim(degraded, clean), psnr_ssim(np.clip(result.image, 0, 1), clean)
    write_png(out / "photo.png", Image.fromarray(side_by_side([degraded, result.image, clean])))
    write_photo(out / "photo-restored.png", result.image)
    details = result.record[mode]
    how = details["chain_names"] if mode == "vote" else f"{details['tools_per_patch']:.2f} tools per patch"
    print(f"{PHOTO} ({clean.shape[1]}x{clean.shape[0]}, {difficulty}: blur {params.blur_sigma:.2f}, noise "
          f"{params.noise_sigma:.1f}, JPEG {params.jpeg_quality}) restored in mode {mode} ({how}) in "
          f"{result.record['seconds']:.1f} s: PSNR {psnr_in:.2f} -> {psnr_out:.2f} dB, SSIM {ssim_in:.4f} -> "
          f"{ssim_out:.4f}")
    return {"photo": PHOTO, "size": list(clean.shape[:2]), "degradation": params.as_dict(), "mode": mode,
            "psnr_input": psnr_in, "ssim_input": ssim_in, "psnr": psnr_out, "ssim": ssim_out,
            "seconds": result.record["seconds"], "record": {k: v for k, v in details.items() if k != "chains"}}


def main(difficulty: str = "moderate", out: str = "demo", mode: str = "vote", patches: int = DEMO_PATCHES) -> None:
    """Run the demo (see the module docstring) and write its pictures and numbers into ``out``."""
    start = time.perf_counter()
    retain_freed_memory()
    folder = Path(out)
    toolbox = Toolbox.pretrained()
    summary = {"difficulty": difficulty, "test_patches": _patches(difficulty, patches, toolbox, folder),
               "whole_photo": _photo(difficulty, toolbox, mode, folder)}
    summary["seconds"] = time.perf_counter() - start
    write_json_atomic(folder / "demo.json", summary)
    print(f"wrote {folder / 'patches.png'}, {folder / 'photo.png'} (input | restored | clean) and "
          f"{folder / 'demo.json'}; done in {summary['seconds']:.1f} s")
