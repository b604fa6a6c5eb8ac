from collections import Counter

import numpy as np
import pytest
import torch

from restore_gym import tool_data as td
from restore_gym.data import BuiltinImages
from restore_gym.degrade import LEVEL_SUM_RANGES
from restore_gym.degrade import allowed_triples as difficulty_triples
from restore_gym.toolbox import TOOL_SPECS, Toolbox

MDP = td.DrawConfig(context="mdp")


def own_value(spec, params):
    return {"blur": params.blur_sigma, "noise": params.noise_sigma, "jpeg": params.jpeg_quality}[spec.family]


def in_band(spec, value):
    low, high = spec.band
    return round(low) <= value <= round(high) if spec.family == "jpeg" else low <= value <= high


def test_slight_params_stay_in_band_and_add_slight_distortions():
    rng = np.random.default_rng(0)
    for spec in TOOL_SPECS:
        for _ in range(50):
            p = td.slight_params(spec, rng)
            assert in_band(spec, own_value(spec, p))
            if spec.family != "blur":
                assert p.blur_sigma == 0.0
            if spec.family != "noise":
                assert td.SLIGHT_NOISE[0] <= p.noise_sigma <= td.SLIGHT_NOISE[1]
            if spec.family != "jpeg":
                assert td.SLIGHT_JPEG[0] <= p.jpeg_quality <= td.SLIGHT_JPEG[1]


def test_band_levels_cover_each_band():
    assert td.band_levels(TOOL_SPECS[2]) == (6, 7, 8)  # blur 2.5..3.75 over the 0.5-wide levels
    assert td.band_levels(TOOL_SPECS[4]) == (1, 2, 3)  # noise 0..12.5 over the 5-wide levels
    assert td.band_levels(TOOL_SPECS[11]) == (9, 10)  # JPEG quality 10..20
    assert td.band_levels(TOOL_SPECS[8]) == (1, 2)  # JPEG quality 60..100


def test_the_union_of_the_difficulties_is_the_default_level_range():
    union = {t for d in ("mild", "moderate", "severe") for t in difficulty_triples(d)}
    assert set(td.allowed_triples(MDP.level_sums)) == union


@pytest.mark.parametrize("spec", TOOL_SPECS, ids=lambda s: s.name)
def test_mdp_draws_follow_the_level_protocol_and_the_band(spec):
    rng = np.random.default_rng(spec.index)
    allowed = set(td.allowed_triples(MDP.level_sums))
    for _ in range(200):
        p = td.mdp_params(spec, MDP, rng)
        assert p.levels in allowed
        assert in_band(spec, own_value(spec, p))
        for family, level in zip(td.FAMILIES, p.levels):
            low, high = td.level_interval(family, level)
            value = {"blur": p.blur_sigma, "noise": p.noise_sigma, "jpeg": p.jpeg_quality}[family]
            assert (round(low) <= value <= round(high)) if family == "jpeg" else low <= value <= high


def test_mdp_draws_carry_strong_co_occurring_distortions():
    rng = np.random.default_rng(3)
    deblur = TOOL_SPECS[2]
    noise = [td.mdp_params(deblur, MDP, rng).noise_sigma for _ in range(500)]
    assert max(noise) > 35 and np.mean(noise) > 10  # the slight context never exceeds 2


def test_configured_shares_of_slight_and_off_band_draws():
    spec, rng = TOOL_SPECS[3], np.random.default_rng(4)
    config = td.DrawConfig(context="mdp", slight_prob=0.3, off_band_prob=0.5)
    draws = [td.draw_params(spec, config, rng) for _ in range(2000)]
    slight = np.mean([p.levels == (0, 0, 0) for p in draws])
    mdp = [p for p in draws if p.levels != (0, 0, 0)]
    off_band = np.mean([not in_band(spec, p.blur_sigma) for p in mdp])
    assert slight == pytest.approx(0.3, abs=0.04)
    # Off-band draws land in the band with the chance that a random allowed triple's blur level is in it.
    in_band_share = np.mean([t[0] in td.band_levels(spec) for t in td.allowed_triples(config.level_sums)])
    assert off_band == pytest.approx(0.5 * (1 - in_band_share), abs=0.05)
    narrow = td.DrawConfig(context="mdp", level_sums=(9, 11))
    assert all(9 <= sum(td.mdp_params(spec, narrow, rng).levels) - 2 <= 11 for _ in range(100))


def difficulty_of(levels):
    return next(d for d, (low, high) in LEVEL_SUM_RANGES.items() if low <= sum(levels) - 2 <= high)


def test_balanced_draws_weigh_the_difficulties_alike_and_keep_the_band():
    spec = TOOL_SPECS[7]
    uniform, balanced = (td.DrawConfig(context="mdp", balance_difficulties=b) for b in (False, True))
    rng = np.random.default_rng(5)
    counts = {name: Counter(difficulty_of(td.mdp_params(spec, config, rng).levels) for _ in range(3000))
              for name, config in (("uniform", uniform), ("balanced", balanced))}
    for difficulty in LEVEL_SUM_RANGES:
        assert counts["balanced"][difficulty] / 3000 == pytest.approx(1 / 3, abs=0.03)
    assert counts["uniform"]["mild"] / 3000 < 0.12  # 18 of tool 8's 214 in-band triples are mild
    assert all(in_band(spec, td.mdp_params(spec, balanced, rng).noise_sigma) for _ in range(200))
    # Groups: the allowed triples of each difficulty, nothing lost, nothing shared.
    groups = td.difficulty_groups((9, 20), spec)
    assert sorted(t for group in groups for t in group) == sorted(td.allowed_triples((9, 20), spec))
    assert len(td.difficulty_groups((1, 20))) == 4  # level sums below mild form a group of their own


def test_the_unbalanced_draw_is_unchanged():
    """The default draw consumes the generator as it did when toolbox v3's first round was trained."""
    spec, rng = TOOL_SPECS[2], np.random.default_rng(11)
    allowed = td.allowed_triples((9, 20), spec)
    expected = np.random.default_rng(11)
    expected.random()  # the off-band coin
    assert td.mdp_params(spec, MDP, rng).levels == allowed[int(expected.integers(len(allowed)))]


@pytest.mark.parametrize("bad, match", [
    ({"context": "full"}, "unknown context"),
    ({"slight_prob": 1.5}, "slight_prob must be a probability"),
    ({"level_sums": (12, 9)}, "level_sums"),
    ({"prior_tools": (13,)}, "1-based"),
    ({"prior_tool_prob": 0.5}, "needs prior_tools"),
])
def test_bad_draw_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        td.DrawConfig(**{"context": "mdp", **bad})


def test_prior_tools_come_from_the_other_families():
    config = td.DrawConfig(context="mdp", prior_tool_prob=0.5, prior_tools=tuple(range(1, 13)))
    for spec in TOOL_SPECS:
        assert {TOOL_SPECS[t].family for t in td.prior_candidates(spec, config)} == set(td.FAMILIES) - {spec.family}


def test_prior_tools_run_on_the_configured_share_of_patches():
    source, spec = BuiltinImages("train"), TOOL_SPECS[1]
    config = td.DrawConfig(context="mdp", prior_tool_prob=0.5, prior_tools=(7,))
    toolbox = Toolbox()
    with torch.no_grad():
        for tool in toolbox.tools:
            tool.conv3.bias.fill_(0.25)  # every tool adds a constant 0.25: its output is recognisable
    with_prior, clean = td.sample_band_batch(source, spec, 64, 15, np.random.default_rng(5), config,
                                             prior_toolbox=toolbox)
    without, _ = td.sample_band_batch(source, spec, 64, 15, np.random.default_rng(5), td.DrawConfig("mdp"))
    shifted = [(a - b).mean().item() > 0.1 for a, b in zip(with_prior, without)]
    assert 0.3 < np.mean(shifted) < 0.7
    with pytest.raises(ValueError, match="pass prior_toolbox"):
        td.sample_band_batch(source, spec, 4, 15, np.random.default_rng(5), config)
