"""``mjepa ablate``: four settings x seeds with identical data and schedule, probed A/V/AV, table and plot."""

import json
import statistics

import pytest

from mjepa.cli import main
from mjepa.experiments.ablation import (
    SETTINGS,
    SETTINGS_BY_NAME,
    AblationPlan,
    build_parser,
    parse_names,
    probe_epochs_of,
    run_overrides,
    run_random_init,
    summarise,
    table_markdown,
)
from mjepa.pretrain_config import load_pretrain_config
from mjepa.typed_config import to_dict
from pretrain_helpers import TINY_RUN


def test_settings_differ_only_in_the_objective_switches(tmp_path):
    args = AblationPlan.from_args(
        build_parser().parse_args(["--out", str(tmp_path), "--steps", "40", "--games", "pong"])
    )
    configs = {}
    for setting in SETTINGS:
        config = to_dict(load_pretrain_config("tiny-cpu", run_overrides(args, setting, seed=3)))
        config["run"].pop("out_dir")
        objective = config["model"].pop("objective")
        configs[setting.name] = (config, objective)
    reference = configs["full"][0]
    for name, (config, _) in configs.items():
        assert config == reference, f"{name} differs from full outside the objective"
    assert reference["run"]["seed"] == 3 and reference["run"]["steps"] == 40
    switches = {n: (o["shared_encoder"], o["cross_modal"], o["joint_av"]) for n, (_, o) in configs.items()}
    assert switches == {
        "separate": (False, "none", False),
        "shared-intra": (True, "none", False),
        "shared-cross": (True, "av", False),
        "full": (True, "all", True),
    }


def test_summary_is_mean_and_sample_std_over_seeds():
    records = [
        {"setting": "full", "label": "all 9", "seed": s, "scores": {"audio": a, "video": 0.5, "av": 0.7}}
        for s, a in ((0, 0.2), (1, 0.4), (2, 0.9))
    ]
    records.append({"setting": "separate", "label": "sep", "seed": 0, "scores": {"audio": 0.3, "video": 0.1}})
    rows = summarise(records)
    assert [r["setting"] for r in rows] == ["separate", "full"]  # table order, not input order
    audio = rows[1]["scores"]["audio"]
    assert audio["mean"] == pytest.approx(0.5) and audio["std"] == pytest.approx(statistics.stdev([0.2, 0.4, 0.9]))
    table = table_markdown(rows)
    assert "| sep | 30.0 | 10.0 | – | 1 |" in table  # a single seed shows no made-up spread
    assert "| all 9 | 50.0 ± 36.1 | 50.0 ± 0.0 | 70.0 ± 0.0 | 3 |" in table


@pytest.mark.slow
def test_ablate_end_to_end_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "ablation"
    common = [
        "--out",
        str(out),
        "--steps",
        "2",
        "--atari-dir",
        str(tmp_path / "atari"),
        "--games",
        "pong,breakout",
        "--clips-per-game",
        "4",
        "--probe-epochs",
        "1",
        "--workers",
        "0",
        *[f"--set={o}" for o in TINY_RUN if not o.startswith("optim.")],
    ]
    assert main(["ablate", *common, "--seeds", "0,1"]) == 0
    summary = json.loads((out / "ablation.json").read_text())
    rows = {r["setting"]: r for r in summary["rows"]}
    assert list(rows) == ["separate", "shared-intra", "shared-cross", "full", "random-init"]
    for name, row in rows.items():
        assert row["seeds"] == [0, 1]
        expected = {"audio", "video"} if name == "separate" else {"audio", "video", "av"}
        assert set(row["scores"]) == expected
        for score in row["scores"].values():
            assert len(score["values"]) == 2 and all(0 <= v <= 1 for v in score["values"])
    trained = [r for r in summary["runs"] if r["setting"] != "random-init"]
    assert all(r["steps"] == 2 and "loss" in r["final_losses"] for r in trained)
    # The settings train different terms: only the full one has the joint AV terms.
    assert any(k.endswith("AV") for k in next(r for r in trained if r["setting"] == "full")["final_losses"])
    assert (out / "ablation.png").is_file() and "± " in (out / "ablation.md").read_text()

    capsys.readouterr()
    assert main(["ablate", *common, "--seeds", "0,1"]) == 0  # finished runs are not redone
    assert capsys.readouterr().out.count("done already") == 8

    # A finished record made under another recipe is refused, not reused under this command's name.
    assert main(["ablate", *common, "--seeds", "0", "--set", "optim.peak_lr=1e-2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optim.peak_lr" in err and "separate/seed0/probe.json" in err
    assert main(["ablate", *common, "--seeds", "0", "--probe-epochs", "2"]) == 2
    assert "--probe-epochs: 1 -> 2" in capsys.readouterr().err
    # Records written before the config was saved are checked on their step budget.
    record_path = out / "runs" / "separate" / "seed0" / "probe.json"
    record = json.loads(record_path.read_text())
    assert record["pretrain_config"]["run"]["steps"] == 2
    del record["pretrain_config"]
    record_path.write_text(json.dumps(record))
    steps_at = common.index("--steps") + 1
    assert main(["ablate", *common[:steps_at], "3", *common[steps_at + 1 :], "--seeds", "0"]) == 2
    assert "run.steps: 2 -> 3" in capsys.readouterr().err


def test_unknown_setting_is_one_line_error(tmp_path, capsys):
    assert main(["ablate", "--out", str(tmp_path), "--settings", "full,shared"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'shared'" in err and "shared-intra" in err


@pytest.mark.slow
def test_context_encoder_rows_sit_beside_the_target_rows(tmp_path, capsys):
    out = tmp_path / "ablation"
    common = [
        "--out",
        str(out),
        "--steps",
        "2",
        "--atari-dir",
        str(tmp_path / "atari"),
        "--games",
        "pong,breakout",
        "--clips-per-game",
        "4",
        "--probe-epochs",
        "1",
        "--workers",
        "0",
        "--seeds",
        "0",
        "--settings",
        "shared-intra",
        *[f"--set={o}" for o in TINY_RUN if not o.startswith("optim.")],
    ]
    assert main(["ablate", *common]) == 0  # the target first, as a run from before --encoders would have
    folder = out / "runs" / "shared-intra" / "seed0"
    assert (folder / "probe.json").is_file() and not (folder / "probe-context.json").exists()
    capsys.readouterr()
    assert main(["ablate", *common, "--encoders", "target,context"]) == 0
    printed = capsys.readouterr().out
    assert "pretraining shared-intra" in printed and "(context encoder)" in printed  # only the missing probe ran
    assert "(target encoder)" not in printed
    summary = json.loads((out / "ablation.json").read_text())
    rows = [(r["setting"], r["encoder"], r["label"]) for r in summary["rows"]]
    assert rows == [
        ("shared-intra", "target", "shared encoder, intra-modal terms only"),
        ("shared-intra", "context", "shared encoder, intra-modal terms only (context encoder)"),
    ]
    assert summary["steps"] == 2 and summary["probe"]["encoders"] == ["context", "target"]
    target, context = summary["rows"]
    assert set(context["scores"]) == {"audio", "video", "av"}
    # Two distinct encoders were probed: the context encoder's weights moved away from the EMA target's.
    assert any(target["scores"][m]["values"] != context["scores"][m]["values"] for m in ("audio", "video", "av"))
    capsys.readouterr()
    assert main(["ablate", *common, "--encoders", "context"]) == 0
    assert "done already" in capsys.readouterr().out


def test_records_without_an_encoder_are_target_records():
    records = [
        {"setting": "full", "label": "all 9", "seed": 0, "scores": {"audio": 0.2}},
        {"setting": "full", "label": "all 9", "seed": 0, "encoder": "context", "scores": {"audio": 0.6}},
    ]
    rows = summarise(records)
    assert [(r["encoder"], r["scores"]["audio"]["mean"]) for r in rows] == [("target", 0.2), ("context", 0.6)]


def test_empty_encoders_is_one_line_error(tmp_path, capsys):
    assert main(["ablate", "--out", str(tmp_path), "--encoders", ",", "--report-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--encoders" in err and "target" in err


def write_record(out, setting, seed, overrides=()):
    args = AblationPlan.from_args(build_parser().parse_args(["--out", str(out), "--steps", "40", "--games", "pong"]))
    config = load_pretrain_config("tiny-cpu", [*run_overrides(args, SETTINGS_BY_NAME[setting], seed), *overrides])
    path = out / "runs" / setting / f"seed{seed}" / "probe.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "setting": setting,
                "label": setting,
                "seed": seed,
                "steps": 40,
                "encoder": "target",
                "scores": {"audio": 0.5},
                "probe_epochs": 4,
                "pretrain_config": to_dict(config),
            }
        )
    )
    return path


def test_report_takes_the_recipe_from_the_records_and_refuses_two_recipes(tmp_path, capsys):
    out = tmp_path / "ablation"
    write_record(out, "separate", 0)
    write_record(out, "full", 1)  # another setting and seed: the same recipe
    assert main(["ablate", "--out", str(out), "--report-only"]) == 0  # no need to repeat the run's flags
    summary = json.loads((out / "ablation.json").read_text())
    assert summary["recipe"]["run.steps"] == 40 and summary["recipe"]["optim.peak_lr"] == 5e-4
    assert "run.seed" not in summary["recipe"] and "model.objective.joint_av" not in summary["recipe"]
    assert summary["records_without_config"] == 0 and summary["probe"]["epochs"] == 4

    other = write_record(out, "shared-intra", 0, ["optim.peak_lr=1e-3"])
    capsys.readouterr()
    assert main(["ablate", "--out", str(out), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(other) in err and "optim.peak_lr: 0.0005 -> 0.001" in err


def test_random_init_is_a_setting_that_needs_the_full_run(tmp_path, capsys):
    assert parse_names("full")[1] is False and parse_names("random-init") == ([], True)
    assert parse_names(build_parser().get_default("settings"))[1] is True  # the default table has the row
    args = AblationPlan.from_args(
        build_parser().parse_args(["--out", str(tmp_path), "--steps", "40", "--games", "pong"])
    )
    with pytest.raises(ValueError, match=r"random-init seed 2: needs the full setting's checkpoint .*full/seed2"):
        run_random_init(args, 2)


def test_probe_epochs_come_from_the_records(tmp_path):
    records = {tmp_path / "a.json": {"probe_epochs": 4}, tmp_path / "b.json": {"probe_epochs": 4}}
    assert probe_epochs_of(records) == 4
    records[tmp_path / "c.json"] = {"probe_epochs": 2}
    with pytest.raises(ValueError, match=r"[ab].json: probed for 4 epochs, .*c.json for 2"):
        probe_epochs_of(records)


def test_every_committed_record_says_how_it_was_probed():
    """The records in docs/results were migrated once: each ablation record names its probe epochs, each track
    record that holds settings names its encoder, so no reader has to guess."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parents[2] / "docs" / "results"
    for path in results.rglob("*.json"):
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            continue
        for run in [record, *record.get("runs", [])]:
            if isinstance(run, dict) and "setting" in run and "scores" in run:
                assert "probe_epochs" in run, path
        for scored in record.get("records", []):
            assert scored.get("settings") is None or "encoder" in scored["settings"], path
