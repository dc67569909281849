import json

import pytest

from mjepa.eval import probe_command
from mjepa.models.encoder import MultimodalEncoder
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain
from pretrain_helpers import TINY_RUN


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
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
            f"run.out_dir={root / 'run'}",
        ],
    )
    pretrain(config)
    return root, root / "run" / "checkpoints" / "latest.pt"


def _probe_args(root, checkpoint, modality):
    return [
        "--checkpoint",
        str(checkpoint),
        "--task",
        "atari",
        "--atari-dir",
        str(root / "atari"),
        "--modality",
        modality,
        "--epochs",
        "2",
        "--lrs",
        "1e-3",
        "--wds",
        "0.0,0.1",
        "--workers",
        "0",
        "--cache-dir",
        str(root / "cache"),
        "--out",
        str(root / f"probe-{modality}"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["audio", "video", "av"])
def test_probe_writes_results_for_trained_and_random_encoders(trained_checkpoint, modality):
    root, checkpoint = trained_checkpoint
    assert probe_command.main(_probe_args(root, checkpoint, modality)) == 0
    out = root / f"probe-{modality}"
    results = json.loads((out / "results.json").read_text())
    rows = {r["encoder"]: r for r in results["results"]}
    assert set(rows) == {"trained", "random-init"}
    for row in rows.values():
        assert 0.0 <= row["score"] <= 1.0 and row["metric"] == "map" and len(row["all_heads"][0]) == 2
        assert "validation" in row["selection_rule"]
    table = (out / "results.md").read_text()
    assert "| atari | trained |" in table and "| atari | random-init |" in table
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_second_probe_run_reads_the_feature_cache(trained_checkpoint, monkeypatch):
    root, checkpoint = trained_checkpoint
    assert probe_command.main(_probe_args(root, checkpoint, "av")) == 0  # fills the cache (or reuses it)
    calls = []
    original = MultimodalEncoder.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultimodalEncoder, "forward", counting)
    assert probe_command.main(_probe_args(root, checkpoint, "av")) == 0
    assert calls == []


def test_context_encoder_probe_writes_beside_the_target_probe(trained_checkpoint):
    root, checkpoint = trained_checkpoint
    args = [
        *(a for a in _probe_args(root, checkpoint, "video") if a not in ("--out", str(root / "probe-video"))),
        "--no-baseline",
    ]
    assert probe_command.main(args) == 0
    cached = len(list((root / "cache").glob("features-*.pt")))
    assert probe_command.main([*args, "--encoder", "context"]) == 0
    results = json.loads((checkpoint.parent / "probe-atari-video-context" / "results.json").read_text())
    assert results["encoder"] == "context" and [r["encoder"] for r in results["results"]] == ["trained"]
    # The context encoder's features are cached under their own fingerprint: three new files (train/val/test).
    assert len(list((root / "cache").glob("features-*.pt"))) == cached + 3


def test_probe_errors_are_one_line(trained_checkpoint, capsys):
    root, checkpoint = trained_checkpoint
    assert probe_command.main(["--checkpoint", str(checkpoint), "--task", "esc50", "--modality", "audio"]) == 2
    assert "--esc50-root" in capsys.readouterr().err
    assert probe_command.main(["--checkpoint", str(root / "none.pt"), "--task", "atari", "--modality", "av"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_retrieve_reports_both_methods(trained_checkpoint, capsys):
    from mjepa.eval import retrieve_command

    root, checkpoint = trained_checkpoint
    out = root / "retrieval.json"
    args = [
        "--checkpoint",
        str(checkpoint),
        "--atari-dir",
        str(root / "atari"),
        "--ks",
        "1,2",
        "--workers",
        "0",
        "--out",
        str(out),
    ]
    assert retrieve_command.main(args) == 0
    record = json.loads(out.read_text())
    assert record["items"] > 0 and record["skipped_items"] == 0
    for method in ("predictor_l1", "cosine"):
        for direction in ("a2v", "v2a"):
            recall = record["results"][method][f"retrieval/{method}/{direction}/R@1"]
            assert 0.0 <= recall <= record["results"][method][f"retrieval/{method}/{direction}/R@2"] <= 1.0
    assert "| predictor_l1 | A->V |" in capsys.readouterr().out


@pytest.mark.slow
def test_two_process_probe_keeps_a_shard_per_rank_and_scores_like_one_process(trained_checkpoint):
    import subprocess
    import sys

    import torch

    from pretrain_helpers import cli_env

    root, checkpoint = trained_checkpoint
    common = [
        "--checkpoint",
        str(checkpoint),
        "--task",
        "atari",
        "--atari-dir",
        str(root / "atari"),
        "--modality",
        "video",
        "--epochs",
        "1",
        "--lrs",
        "1e-3",
        "--wds",
        "0.0",
        "--workers",
        "0",
        "--no-baseline",
    ]
    assert probe_command.main([*common, "--cache-dir", str(root / "cache-single"), "--out", str(root / "single")]) == 0
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "mjepa.cli",
            "probe",
            *common,
            "--cache-dir",
            str(root / "cache-two"),
            "--out",
            str(root / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # only rank 0 reports
    single = [torch.load(f, weights_only=True) for f in sorted((root / "cache-single").glob("features-*.pt"))]
    shards = [torch.load(f, weights_only=True) for f in sorted((root / "cache-two").glob("features-*.pt"))]
    assert len(single) == 3 and len(shards) == 6  # train/val/test, one file per rank in the 2-process run
    for whole in single:
        items = json.loads(whole["key"])["items"]
        parts = [s for s in shards if json.loads(s["key"])["items"] == items]
        assert len(parts) == 2, "each split is held as two shards"
        for part in parts:  # no rank holds more than its share
            assert part["tokens"].shape[0] <= -(-whole["tokens"].shape[0] // 2)
        joined = torch.cat([p["indices"] for p in parts])
        order = joined.argsort()
        assert torch.equal(joined[order], whole["indices"])
        tokens = torch.cat([p["tokens"] for p in parts])[order]
        assert torch.allclose(tokens.float(), whole["tokens"].float(), atol=1e-2)
    one = json.loads((root / "single" / "results.json").read_text())["results"][0]["score"]
    two = json.loads((root / "two" / "results.json").read_text())["results"][0]["score"]
    assert abs(one - two) < 0.02  # the same batches and summed gradients: float rounding apart, the same heads
