import json

import numpy as np
import pytest
import torch
from conftest import OFFICIAL_DIR

from restore_gym import evaluation
from restore_gym.baselines import BASELINES, fixed_chain_policy
from restore_gym.data import load_test_set
from restore_gym.evaluation import AGENTS, check_agent, evaluate, format_summary, main, make_policy
from restore_gym.toolbox import TOOL_SPECS, Toolbox


@pytest.fixture(scope="module")
def toolbox():
    torch.manual_seed(0)
    return Toolbox(metadata={"provenance": "random test toolbox"})


def test_report_fields_and_usage_counts_on_the_frozen_set(toolbox):
    report = evaluate(BASELINES["random"](toolbox, "mild", seed=0), "mild", toolbox)
    test_set = load_test_set("mild")
    assert report["agent"]["name"] == "random" and report["difficulty"] == "mild"
    assert report["patches"] == len(test_set) == 164
    assert report["test_set"] == {"difficulty": "mild", "patches": 164, "digest": test_set.digest,
                                  "expected_digest": test_set.expected_digest,
                                  "digest_matches": test_set.digest_matches}
    assert report["toolbox"] == {"fingerprint": toolbox.fingerprint(), "version": 0,
                                 "metadata": {"provenance": "random test toolbox"}}
    assert {"packages", "git_commit", "torch"} <= report["provenance"].keys()
    metrics, chains = report["metrics"], report["per_patch"]["chain"]
    lengths = [len(chain) for chain in chains]
    usage = report["tool_usage"]
    assert sum(usage["per_tool"]) == sum(map(sum, usage["per_step"])) == sum(lengths) > 0
    assert [sum(row) for row in usage["per_step"]] == [sum(n > k for n in lengths) for k in range(3)]
    assert metrics["chain_length"] == pytest.approx(np.mean(lengths))
    assert metrics["macs_per_patch"] == pytest.approx(np.mean([sum(TOOL_SPECS[t].macs for t in c) for c in chains]))
    psnr, psnr_input = np.array(report["per_patch"]["psnr"]), np.array(report["per_patch"]["psnr_input"])
    assert metrics["psnr"] == pytest.approx(psnr.mean()) and metrics["psnr_input"] == pytest.approx(psnr_input.mean())
    assert metrics["psnr_gain"] == pytest.approx((psnr - psnr_input).mean())
    assert 0 < metrics["ssim"] <= 1 and 0 < metrics["ssim_input"] <= 1 and metrics["wall_seconds_per_patch"] > 0
    json.dumps(report)
    assert "random on mild (164 patches" in format_summary(report)


def test_a_fixed_chain_counts_every_step(toolbox):
    report = evaluate(fixed_chain_policy((6,), "fixed"), "moderate", toolbox)
    assert report["per_patch"]["chain"] == [[6]] * 164
    assert report["tool_usage"]["per_tool"][6] == report["tool_usage"]["per_step"][0][6] == 164
    assert report["metrics"]["macs_per_patch"] == TOOL_SPECS[6].macs


def test_command_line_writes_the_report_atomically(tmp_path, monkeypatch, capsys, toolbox):
    toolbox_path = tmp_path / "toolbox.pt"
    toolbox.save(toolbox_path)
    writes = []
    write = evaluation.write_json_atomic
    monkeypatch.setattr(evaluation, "write_json_atomic", lambda path, data: writes.append(path) or write(path, data))
    out = tmp_path / "results" / "stop.json"
    assert main(["--agent", "stop", "--difficulty", "severe", "--toolbox", str(toolbox_path), "--out", str(out)]) == 0
    assert writes == [str(out)] and [p.name for p in out.parent.iterdir()] == ["stop.json"]
    report = json.loads(out.read_text())
    assert report["agent"] == {"name": "stop", "chain": []} and report["metrics"]["psnr_gain"] == 0.0
    assert report["metrics"]["chain_length"] == 0 and report["toolbox"]["fingerprint"] == toolbox.fingerprint()
    assert report["test_set"]["digest"] == load_test_set("severe").digest
    printed = capsys.readouterr().out
    assert "stop on severe (164 patches" in printed and f"wrote {out}" in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["--agent", "dqn", "--difficulty", "mild"], "unknown agent 'dqn'; known agents: random, stop, best-tool"),
    (["--agent", "stop", "--difficulty", "hard"], "unknown difficulty 'hard'; choose one of mild, moderate, severe"),
    (["--agent", "lstm-dqn", "--difficulty", "mild", "--checkpoint", "/nonexistent/q.pt"],
     "checkpoint /nonexistent/q.pt does not exist"),
    (["--agent", "sb3", "--difficulty", "mild"], "agent 'sb3' needs --checkpoint"),
    (["--agent", "official", "--difficulty", "mild"], "the authors' agent is not converted"),
    (["--agent", "stop", "--difficulty", "mild", "--checkpoint", "q.pt"], "is a baseline and takes no checkpoint"),
    (["--agent", "stop", "--difficulty", "mild", "--toolbox", "/nonexistent/toolbox.pt"],
     "toolbox file /nonexistent/toolbox.pt does not exist"),
    (["--agent", "stop", "--difficulty", "mild", "--official-toolbox", "/nonexistent"],
     "official toolbox folder /nonexistent does not exist"),
])
def test_bad_arguments_exit_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("out", "message"), [
    ("", "is a folder; give the path of a file in it"),
    ("notes.txt/report.json", "notes.txt is a file, not a folder"),
    ("locked/new/report.json", "the folder {tmp}/locked is not writable"),
])
def test_an_output_that_cannot_be_written_is_refused_before_evaluating(tmp_path, monkeypatch, capsys, out, message):
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "locked").mkdir()
    access = evaluation.os.access  # the checks run as root here, where every folder is writable
    monkeypatch.setattr(evaluation.os, "access", lambda path, mode: access(path, mode) and "locked" not in str(path))
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: pytest.fail("evaluated before the check"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--agent", "stop", "--difficulty", "mild", "--out", str(tmp_path / out)])
    assert exit_info.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_bad_arguments_from_python(toolbox):
    assert AGENTS[-3:] == ("lstm-dqn", "official", "sb3") and "exhaustive-oracle" in AGENTS
    with pytest.raises(ValueError, match="known agents: random, stop, best-tool, best-chain, greedy-oracle"):
        make_policy("oracle", toolbox, "mild")
    with pytest.raises(ValueError, match="unknown difficulty"):
        make_policy("stop", toolbox, "extreme")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_agent("lstm-dqn", "/nonexistent/q.pt")
    with pytest.raises(ValueError, match="unknown difficulty"):
        evaluate(fixed_chain_policy((), "stop"), "extreme", toolbox)


def _lstm_dqn_policy_class():
    lstm_dqn = pytest.importorskip("agents.lstm_dqn")
    if not hasattr(lstm_dqn, "LSTMDQNPolicy"):
        pytest.skip("agents.lstm_dqn does not offer LSTMDQNPolicy yet")


def test_a_file_that_is_no_agent_is_refused(tmp_path, capsys, toolbox):
    _lstm_dqn_policy_class()
    bogus = tmp_path / "agent.pt"
    torch.save({"weights": torch.zeros(3)}, bogus)
    toolbox.save(tmp_path / "toolbox.pt")
    with pytest.raises(SystemExit):
        main(["--agent", "lstm-dqn", "--difficulty", "mild", "--checkpoint", str(bogus),
              "--toolbox", str(tmp_path / "toolbox.pt")])
    assert f"{bogus} is not an agent file" in capsys.readouterr().err


@pytest.mark.skipif(not OFFICIAL_DIR.is_dir(), reason="the authors' released weights are not in ../shared/reference")
def test_the_official_agent_with_the_official_toolbox(tmp_path):
    _lstm_dqn_policy_class()
    out = tmp_path / "official.json"
    main(["--agent", "official", "--difficulty", "moderate", "--official-toolbox", str(OFFICIAL_DIR / "toolbox"),
          "--checkpoint", str(OFFICIAL_DIR / "models"), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["agent"]["name"] == "official"
    assert report["toolbox"]["metadata"]["provenance"].startswith("RL-Restore")
    assert report["metrics"]["psnr_gain"] > 2.0 and 1.0 < report["metrics"]["chain_length"] <= 3.0
