import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

import restore_gym.data
import restore_gym.engine
from restore_gym import baselines
from restore_gym.baselines import (
    BASELINES,
    CHAINS,
    NUM_CHAINS,
    ExhaustiveOracle,
    all_chain_psnrs,
    best_fixed_chain,
    chain_psnr_table,
    fixed_chain_policy,
    greedy_oracle_policy,
    num_chains,
    oracle_cache_path,
    validation_set,
)
from restore_gym.data import ImageSource, build_test_set, to_nchw
from restore_gym.engine import STATE_RANGE
from restore_gym.evaluation import evaluate
from restore_gym.metrics import psnr_batch
from restore_gym.rollout import run_one_episode_each
from restore_gym.toolbox import NUM_TOOLS, Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv


class TinyTool(nn.Module):
    """x + conv3x3(x), per channel ``strength * (box - identity)`` plus a little noise: smoothing helps noisy
    patches, sharpening hurts them. Cheap enough to search all 1,885 chains in a test."""

    def __init__(self, strength: float, generator: torch.Generator) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        kernel = torch.full((3, 3), 1.0 / 9.0)
        kernel[1, 1] -= 1.0
        with torch.no_grad():
            self.conv.weight.copy_(0.02 * torch.randn(3, 3, 3, 3, generator=generator))
            for c in range(3):
                self.conv.weight[c, c] += strength * kernel
            self.conv.bias.copy_(0.005 * torch.randn(3, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def tiny_toolbox(seed: int = 0) -> Toolbox:
    generator = torch.Generator().manual_seed(seed)
    toolbox = Toolbox()
    strengths = np.random.default_rng(seed).permutation(np.linspace(-0.3, 0.9, NUM_TOOLS))
    toolbox.tools = nn.ModuleList(TinyTool(float(s), generator) for s in strengths)
    return toolbox


class SyntheticImages(ImageSource):
    """One smooth textured 95 x 221 image per split: 3 test-grid patches (smaller scales are too small)."""

    name = "synthetic"

    def _load(self):
        rng = np.random.default_rng(0 if self.split == "test" else 1)
        image = gaussian_filter(rng.uniform(0, 255, (95, 221, 3)), sigma=(3, 3, 0))
        image = (image - image.min()) / (image.max() - image.min()) * 255
        return [(f"synthetic-{self.split}", image.astype(np.uint8))]


@pytest.fixture(scope="module")
def toolbox():
    return tiny_toolbox()


@pytest.fixture(scope="module")
def test_set():
    return build_test_set("moderate", SyntheticImages("test"))


def brute_force(toolbox, degraded, clean, chains):
    table = np.empty((degraded.shape[0], len(chains)), dtype=np.float32)
    for j, chain in enumerate(chains):
        image = degraded
        for tool in chain:
            image = toolbox.apply(image, [tool] * image.shape[0]).clamp(*STATE_RANGE)
        table[:, j] = psnr_batch(image, clean).numpy()
    return table


def test_chain_order():
    assert NUM_CHAINS == 1885 == 1 + 12 + 144 + 1728 and len(set(CHAINS)) == NUM_CHAINS
    assert [num_chains(k) for k in range(4)] == [1, 13, 157, 1885]
    assert CHAINS[0] == () and CHAINS[1] == (0,) and CHAINS[13] == (0, 0) and CHAINS[-1] == (11, 11, 11)
    assert CHAINS[157:] == tuple(itertools.product(range(12), repeat=3))
    with pytest.raises(ValueError, match="max_length"):
        num_chains(4)


def test_tree_expansion_equals_brute_force(toolbox, test_set):
    degraded, clean = to_nchw(test_set.degraded[:2]), to_nchw(test_set.clean[:2])
    table, chains = all_chain_psnrs(toolbox, degraded, clean, patches_per_chunk=1, max_batch=100)
    assert chains == CHAINS and table.shape == (2, NUM_CHAINS)
    np.testing.assert_allclose(table, brute_force(toolbox, degraded, clean, CHAINS), atol=1e-4)
    assert np.ptp(table, axis=1).min() > 1.0  # the tools differ: the search is not trivially flat


def test_tree_expansion_with_the_real_architecture():
    torch.manual_seed(0)
    toolbox = Toolbox()
    clean = torch.rand(2, 3, 16, 16) * 0.8 + 0.1
    degraded = (clean + 0.05 * torch.randn_like(clean)).clamp(0, 1)
    table, chains = all_chain_psnrs(toolbox, degraded, clean, max_length=2, max_batch=64)
    assert table.shape == (2, 157) and chains == CHAINS[:157]
    np.testing.assert_allclose(table, brute_force(toolbox, degraded, clean, chains), atol=1e-4)


def test_exhaustive_at_least_greedy_at_least_stop_on_every_patch(toolbox, test_set):
    reports = {name: evaluate(policy, "moderate", toolbox, source=SyntheticImages("test")) for name, policy in
               [("stop", BASELINES["stop"](toolbox, "moderate")), ("greedy", greedy_oracle_policy),
                ("exhaustive", ExhaustiveOracle())]}
    assert all(r["test_set"]["digest"] == test_set.digest and r["patches"] == 3 for r in reports.values())
    stop, greedy, best = (np.array(reports[k]["per_patch"]["psnr"]) for k in ("stop", "greedy", "exhaustive"))
    np.testing.assert_allclose(stop, reports["stop"]["per_patch"]["psnr_input"])
    assert (best >= greedy - 1e-4).all() and (greedy >= stop - 1e-4).all()
    assert (best > stop + 0.1).any()
    table = chain_psnr_table(toolbox, test_set)
    np.testing.assert_allclose(best, table.max(axis=1), atol=1e-4)
    assert reports["exhaustive"]["per_patch"]["chain"] == [list(CHAINS[j]) for j in table.argmax(axis=1)]
    assert reports["exhaustive"]["agent"]["test_set_digest"] == test_set.digest


def test_exhaustive_oracle_searches_unknown_patches_on_the_spot(toolbox):
    vec = RLRestoreVectorEnv(num_envs=2, split="train", source=SyntheticImages("train"), toolbox=toolbox,
                              end_on_psnr_drop=False)
    vec.reset(seed=3)
    table, _ = all_chain_psnrs(toolbox, vec.batch.inputs.clone(), vec.batch.clean.clone())
    result = run_one_episode_each(vec, ExhaustiveOracle(max_batch=500), seed=3)
    np.testing.assert_allclose(result["psnr_final"], table.max(axis=1), atol=1e-4)


def test_cache_hit_then_invalidation_when_the_weights_change(tmp_path, monkeypatch, test_set):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path))
    calls = []
    search = baselines.all_chain_psnrs
    monkeypatch.setattr(baselines, "all_chain_psnrs", lambda *a, **k: calls.append(1) or search(*a, **k))
    toolbox = tiny_toolbox(seed=1)
    first = chain_psnr_table(toolbox, test_set)
    path = oracle_cache_path(toolbox.fingerprint(), test_set.digest)
    assert path.is_file() and path.parent == tmp_path / "oracles" and len(calls) == 1
    assert not [p for p in path.parent.iterdir() if p != path]  # atomic write: no temp file left
    np.testing.assert_array_equal(chain_psnr_table(toolbox, test_set), first)
    np.testing.assert_array_equal(chain_psnr_table(toolbox, test_set, max_length=1), first[:, :13])
    assert len(calls) == 1
    with torch.no_grad():
        toolbox.tools[3].conv.bias += 0.01
    changed = chain_psnr_table(toolbox, test_set)
    assert len(calls) == 2 and oracle_cache_path(toolbox.fingerprint(), test_set.digest) != path
    assert not np.allclose(changed, first)


@pytest.mark.parametrize("damage", ["flipped", "truncated", "emptied"])
def test_a_damaged_cached_table_is_rebuilt_with_a_warning_naming_it(tmp_path, monkeypatch, test_set, damage):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path))
    toolbox = tiny_toolbox(seed=2)  # single tools only (max_length=1): a table in a blink
    first = chain_psnr_table(toolbox, test_set, max_length=1)
    path = oracle_cache_path(toolbox.fingerprint(), test_set.digest)
    data = bytearray(path.read_bytes())
    if damage == "flipped":  # inside the table: its CRC check fails
        data[len(data) // 2:len(data) // 2 + 100] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 100])
    path.write_bytes({"flipped": bytes(data), "truncated": bytes(data[:len(data) // 2]), "emptied": b""}[damage])
    with pytest.warns(UserWarning, match=rf"cached chain-PSNR table {path} is damaged \(.*\); rebuilding it"):
        np.testing.assert_array_equal(chain_psnr_table(toolbox, test_set, max_length=1), first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten whole: read without a warning
        np.testing.assert_array_equal(chain_psnr_table(toolbox, test_set, max_length=1), first)


def test_best_tool_and_chain_are_chosen_on_the_train_split_only(monkeypatch, toolbox):
    def forbidden(*args, **kwargs):
        raise AssertionError("a baseline looked at the test set")

    for module in (restore_gym.data, restore_gym.engine):
        monkeypatch.setattr(module, "load_test_set", forbidden)
        monkeypatch.setattr(module, "build_test_set", forbidden)
    patch_at = ImageSource.patch_at

    def train_only(self, *args, **kwargs):
        assert self.split == "train", "a baseline drew a patch from the test split"
        return patch_at(self, *args, **kwargs)

    monkeypatch.setattr(ImageSource, "patch_at", train_only)
    source = SyntheticImages("train")
    validation = validation_set("moderate", source, size=3)
    means = chain_psnr_table(toolbox, validation).mean(axis=0)
    tool = BASELINES["best-tool"](toolbox, "moderate", source=source, validation_size=3)
    chain = BASELINES["best-chain"](toolbox, "moderate", source=source, validation_size=3)
    assert tool.details["chain"] == [int(np.argmax(means[1:13]))]
    assert chain.details["chain"] == list(CHAINS[int(np.argmax(means))])
    for policy in (tool, chain):
        assert policy.details["chosen_on"]["split"] == "train"
        assert policy.details["chosen_on"]["digest"] == validation.digest
    assert best_fixed_chain(toolbox, validation, 1, exact_length=True)[0] == tuple(tool.details["chain"])


def test_fixed_chains_ignore_the_patches(toolbox):
    vec = RLRestoreVectorEnv(num_envs=3, split="test", source=SyntheticImages("test"), toolbox=toolbox)
    result = run_one_episode_each(vec, fixed_chain_policy((4, 0), "fixed"))
    assert result["chains"] == [[4, 0]] * 3


def test_registry_builds_named_policies(toolbox):
    assert list(BASELINES) == ["random", "stop", "best-tool", "best-chain", "greedy-oracle", "exhaustive-oracle"]
    vec = RLRestoreVectorEnv(num_envs=3, split="test", source=SyntheticImages("test"), toolbox=toolbox)
    for name in ("random", "stop", "greedy-oracle"):
        policy = BASELINES[name](toolbox, "moderate", seed=0)
        assert policy.name == name
        result = run_one_episode_each(vec, policy)
        assert all(len(chain) <= 3 for chain in result["chains"])
    assert BASELINES["exhaustive-oracle"](toolbox, "moderate").name == "exhaustive-oracle"
