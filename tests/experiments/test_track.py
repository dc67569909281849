"""``mjepa track``: every checkpoint of a run scored on the same held-out clips and masks, plus probe scores."""

import json
from pathlib import Path

import pytest
import torch

from mjepa.cli import main
from mjepa.eval.features import encoder_fingerprint
from mjepa.eval.loading import load_model
from mjepa.eval.run_probe import probe_encoder
from mjepa.eval.tasks import atari_splits
from mjepa.experiments.heldout import fixed_masks, heldout_batches, heldout_evaluation
from mjepa.experiments.track import run_labels
from mjepa.pretrain_config import load_pretrain_config
from mjepa.terms import active_terms
from mjepa.train.loop import pretrain
from pretrain_helpers import TINY_RUN


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    config = load_pretrain_config(
        "tiny-cpu",
        [
            *TINY_RUN,
            "data.source=atari",
            f"data.atari_dir={root / 'atari'}",
            "data.atari_games=[pong,breakout]",
            "data.atari_clips_per_game=4",
            "data.num_workers=0",
            "run.steps=4",
            "run.batch_size=4",
            "run.checkpoint_every=2",
            "run.keep_checkpoints=2",
            f"run.out_dir={root / 'run'}",
        ],
    )
    pretrain(config)
    return root


def _checkpoint(root, step):
    return load_model(root / "run" / "checkpoints" / f"step_{step:08d}.pt")


@pytest.mark.slow
def test_heldout_loss_is_deterministic_and_moves_with_the_model(tracked_run):
    first, last = _checkpoint(tracked_run, 2), _checkpoint(tracked_run, 4)
    test_items = atari_splits(str(tracked_run / "atari")).test
    assert len(test_items) == 2
    batches, skipped = heldout_batches(test_items, first.frontend, batch_size=1, workers=0, max_items=5)
    assert not skipped and [b.batch_size for b in batches] == [1, 1]
    # The same clips get the same masks whichever checkpoint is scored.
    for index, batch in enumerate(batches):
        a, b = fixed_masks(first, batch, index, seed=7), fixed_masks(last, batch, index, seed=7)
        for mode in a:
            for pa, pb in zip(a[mode], b[mode]):
                assert torch.equal(pa.context, pb.context) and torch.equal(pa.target, pb.target)
    cpu = torch.device("cpu")
    once = heldout_evaluation(first, batches, mask_seed=7, device=cpu, precision="fp32")
    again = heldout_evaluation(first, batches, mask_seed=7, device=cpu, precision="fp32")
    assert once == again
    assert set(once.losses) == {"loss", *active_terms(first.config.model.objective)}
    # Collapse indicators over all held-out clips together: 2 clips span at most 1 centred direction.
    assert set(once.collapse) == {f"{k}_{m}" for k in ("target_std", "effective_rank") for m in ("A", "V", "AV")}
    assert all(0.99 <= once.collapse[f"effective_rank_{m}"] <= 1.01 for m in ("A", "V", "AV"))
    later = heldout_evaluation(last, batches, mask_seed=7, device=cpu, precision="fp32")
    assert later.losses["loss"] != once.losses["loss"]
    other_masks = heldout_evaluation(first, batches, mask_seed=8, device=cpu, precision="fp32")
    assert other_masks.losses["loss"] != once.losses["loss"]
    assert other_masks.collapse == once.collapse  # the targets see the whole clip: masks do not change them


@pytest.mark.slow
def test_track_writes_one_record_per_checkpoint_and_resumes(tracked_run, capsys):
    out = tracked_run / "tracked"
    args = [
        "track",
        str(tracked_run / "run"),
        "--atari-dir",
        str(tracked_run / "atari"),
        "--modalities",
        "audio,av",
        "--probe-epochs",
        "1",
        "--probe-seeds",
        "0,1",
        "--heldout-items",
        "4",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = json.loads((out / "track.json").read_text())
    assert [r["step"] for r in summary["records"]] == [2, 4]
    for record in summary["records"]:
        assert set(record["probe_scores"]) == {"audio", "av"}
        for score in record["probe_scores"].values():
            assert len(score["values"]) == 2 and all(0.0 <= v <= 1.0 for v in score["values"])
            assert score["mean"] == pytest.approx(sum(score["values"]) / 2)
        assert record["heldout_losses"]["loss"] > 0
        for shares in record["heldout_variance_shares"].values():  # 2 held-out clips: one direction of variance
            assert len(shares) == 2 and shares[0] == pytest.approx(1.0, abs=1e-3)
    assert summary["heldout_items"] == 2 and (out / "track.png").is_file()
    assert "| 4 |" in (out / "track.md").read_text() and "top 3 directions" in (out / "track.md").read_text()

    capsys.readouterr()
    assert main(args) == 0  # finished checkpoints are read back, not recomputed
    assert "track: run step" not in capsys.readouterr().out

    # Other probe settings do not read those records back: each checkpoint is scored again under the new ones.
    no_probe = ["" if a == "audio,av" else a for a in args]  # --modalities '': held-out loss only
    assert main(no_probe) == 0
    assert "made with other settings" in capsys.readouterr().out
    summary = json.loads((out / "track.json").read_text())
    assert all(r["probe_scores"] == {} and r["settings"]["modalities"] == [] for r in summary["records"])


@pytest.mark.slow
def test_probes_can_be_limited_to_some_steps(tracked_run, tmp_path, capsys):
    common = [
        "track",
        str(tracked_run / "run"),
        "--atari-dir",
        str(tracked_run / "atari"),
        "--modalities",
        "video",
        "--probe-epochs",
        "1",
        "--probe-seeds",
        "0",
        "--heldout-items",
        "2",
        "--workers",
        "0",
        "--out",
        str(tmp_path / "t"),
    ]
    assert main([*common, "--probe-steps", "4"]) == 0
    records = json.loads((tmp_path / "t" / "track.json").read_text())["records"]
    assert [sorted(r["probe_scores"]) for r in records] == [[], ["video"]]
    table = (tmp_path / "t" / "track.md").read_text()
    assert "| 2 |" in table and "| – |" in table
    capsys.readouterr()
    assert main([*common, "--probe-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--probe-steps: step 3" in err and "2, 4" in err


@pytest.mark.slow
def test_several_runs_share_one_comparison_figure(tracked_run, tmp_path, capsys):
    run = str(tracked_run / "run")
    common = [
        "--atari-dir",
        str(tracked_run / "atari"),
        "--modalities",
        "video",
        "--probe-epochs",
        "1",
        "--probe-seeds",
        "0",
        "--steps",
        "4",
        "--workers",
        "0",
    ]
    assert main(["track", run, run, "--out", str(tmp_path / "x"), *common]) == 2
    assert "--out" in capsys.readouterr().err
    figure = tmp_path / "compare.png"
    assert main(["track", run, run, "--compare-out", str(figure), *common]) == 0
    assert figure.is_file() and (tracked_run / "run" / "track" / "track.json").is_file()
    # A saved track.json (its checkpoints may be deleted by then) is drawn as it is, beside a run folder.
    saved = tmp_path / "before.json"
    saved.write_text((tracked_run / "run" / "track" / "track.json").read_text())
    figure.unlink()
    capsys.readouterr()
    assert main(["track", str(saved), run, "--compare-out", str(figure), *common]) == 0
    assert figure.is_file() and "track: run step" not in capsys.readouterr().out
    assert main(["track", str(saved), *common]) == 2
    assert "--compare-out" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{}")
    assert main(["track", str(tmp_path / "broken.json"), run, "--compare-out", str(figure), *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.json" in err


@pytest.mark.slow
def test_the_context_encoder_is_probed_into_its_own_folder(tracked_run, capsys):
    loaded = _checkpoint(tracked_run, 4)
    assert probe_encoder(loaded, "video") is loaded.model.target_encoders["shared"]
    assert probe_encoder(loaded, "video", "context") is loaded.model.encoders["shared"]
    # After 4 steps at EMA momentum < 1 the two differ, so their features are cached apart.
    fingerprints = {encoder_fingerprint(probe_encoder(loaded, "av", which)) for which in ("target", "context")}
    assert len(fingerprints) == 2
    with pytest.raises(ValueError, match="'online'.*'target'.*'context'"):
        probe_encoder(loaded, "audio", "online")

    run = tracked_run / "run"
    common = [
        "track",
        str(run),
        "--atari-dir",
        str(tracked_run / "atari"),
        "--modalities",
        "video",
        "--probe-epochs",
        "1",
        "--probe-seeds",
        "0",
        "--steps",
        "4",
        "--heldout-items",
        "2",
        "--workers",
        "0",
    ]
    assert main([*common, "--encoder", "context"]) == 0
    context = json.loads((run / "track-context" / "track.json").read_text())
    assert context["probe"]["encoder"] == "context" and context["records"][0]["settings"]["encoder"] == "context"
    assert main(common) == 0
    target = run / "track" / "steps" / "step_00000004.json"
    assert json.loads(target.read_text())["settings"]["encoder"] == "target"
    # A record whose settings do not say which encoder it probed is not guessed at: it is scored again.
    record = json.loads(target.read_text())
    del record["settings"]["encoder"]
    target.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(common) == 0
    assert "other settings" in capsys.readouterr().out


def test_unknown_step_and_missing_checkpoints_are_one_line_errors(tracked_run, tmp_path, capsys):
    assert main(["track", str(tracked_run / "run"), "--steps", "3", "--atari-dir", str(tracked_run / "atari")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 3" in err and "2, 4" in err
    assert main(["track", str(tmp_path), "--atari-dir", str(tracked_run / "atari")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.checkpoint_every" in err


def test_step_zero_is_the_weights_the_run_started_from(tmp_path):
    # With EMA momentum 1 the target encoder never moves, so every checkpoint holds the run's initial target.
    config = load_pretrain_config(
        "tiny-cpu",
        [
            *TINY_RUN,
            "data.source=synthetic",
            "run.steps=4",
            "run.batch_size=2",
            "run.seed=5",
            "optim.ema_start=1.0",
            "optim.ema_end=1.0",
            f"run.out_dir={tmp_path / 'run'}",
        ],
    )
    pretrain(config)
    checkpoint = tmp_path / "run" / "checkpoints" / "latest.pt"
    trained = load_model(checkpoint).model.target_encoders.state_dict()
    initial = load_model(checkpoint, random_init=True, init_seed=5).model.target_encoders.state_dict()
    baseline = load_model(checkpoint, random_init=True).model.target_encoders.state_dict()
    assert all(torch.equal(trained[k], initial[k]) for k in trained)
    assert not all(torch.equal(trained[k], baseline[k]) for k in trained)  # the baseline is another draw


def test_comparison_labels_tell_runs_apart():
    summaries = [
        {"run_dir": "runs/a/full/seed2/pretrain"},
        {"run_dir": "runs/b/full/seed2/pretrain"},
        {"run_dir": "runs/stability-v1"},
        {"run_dir": "runs/x"},
    ]
    paths = [
        Path("runs/a/full/seed2/pretrain"),
        Path("runs/b/full/seed2/pretrain/track/track.json"),
        Path("runs/stability-v1"),
        Path("docs/stability_track_x.json"),
    ]
    assert run_labels(paths, summaries) == [
        "a/full/seed2/pretrain",
        "b/full/seed2/pretrain",
        "runs/stability-v1",
        "stability_track_x",
    ]
