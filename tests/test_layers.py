"""The package's shape: what importing a module loads, and that the built wheel works on its own."""

import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_ABOUT_SB3 = ("restore_gym", "restore_gym.env", "restore_gym.vector_env", "restore_gym.baselines",
                 "restore_gym.evaluation", "restore_gym.joint", "restore_gym.lstm_dqn", "restore_gym.networks",
                 "restore_gym.train_tools", "restore_gym.cli")


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout))


def test_modules_not_about_sb3_do_not_load_it():
    # Imported together in one interpreter: if all of them leave SB3 unloaded, so does each one alone.
    loaded = _loaded_after_import(", ".join(NOT_ABOUT_SB3))
    assert not {"stable_baselines3", "sb3_contrib"} & loaded


def test_only_restore_gym_rllib_loads_ray():
    # Ray is an optional extra: the library works without it, and loads it only where RLlib is used.
    assert not {m for m in _loaded_after_import(", ".join(NOT_ABOUT_SB3)) if m.split(".")[0] == "ray"}
    if importlib.util.find_spec("ray") is not None:
        assert {"ray.rllib", "ray.tune"} <= _loaded_after_import("restore_gym.rllib")


def test_the_library_never_loads_the_applications():
    loaded = _loaded_after_import("restore_gym.cli, restore_gym.joint, restore_gym.evaluation")
    assert not {m for m in loaded if m.split(".")[0] in ("agents", "benchmarks")}


def test_the_leaderboard_loads_ray_only_to_run_on_it():
    # Ray is an optional extra: the leaderboard imports it when a sweep runs with --ray, not before
    assert "ray" not in _loaded_after_import("benchmarks.leaderboard")


WHEEL_CHECK = textwrap.dedent("""
    import json, subprocess, sys
    import gymnasium as gym
    import restore_gym
    from restore_gym.baselines import NamedPolicy
    from restore_gym.evaluation import evaluate
    from restore_gym.lstm_dqn import LSTMDQNPolicy
    from restore_gym.toolbox import PRETRAINED_FILES, Toolbox

    env = gym.make("RLRestore-v0")
    obs, info = env.reset(seed=0)
    env.step(6)
    toolboxes = {variant: Toolbox.pretrained(variant=variant).fingerprint() for variant in PRETRAINED_FILES}
    report = evaluate(NamedPolicy("lstm-dqn", LSTMDQNPolicy.pretrained()), "moderate", Toolbox.pretrained(),
                      max_patches=4)
    cli = subprocess.run([sys.executable, "-m", "restore_gym", "evaluate", "--agent", "lstm-dqn",
                          "--difficulty", "mild", "--max-patches", "2"], capture_output=True, text=True)
    print(json.dumps({"file": restore_gym.__file__, "toolboxes": sorted(toolboxes), "patches": report["patches"],
                      "gain": report["metrics"]["psnr_gain"], "cli": cli.returncode, "cli_out": cli.stdout}))
""")


def test_the_wheel_installs_whole_and_runs_the_shipped_agent(tmp_path):
    """Build the wheel, install it (without dependencies) into a fresh virtual environment that reuses this
    environment's packages, and use it from outside the repository."""
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(ROOT / "restore_gym", source / "restore_gym", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(wheels), str(source)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("restore_gym-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (torch, gymnasium, ...) come from this environment; the project itself does not.
    (Path(site) / "reuse-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run([str(python), "-c", WHEEL_CHECK], capture_output=True, text=True, cwd=outside)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(record["file"]).is_relative_to(venv), record["file"]
    assert record["toolboxes"] == sorted(["plain", "v2", "v3", "v4", "joint"]) and record["patches"] == 4
    assert record["cli"] == 0 and "lstm-dqn on mild" in record["cli_out"]
