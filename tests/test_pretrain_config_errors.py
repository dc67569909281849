import pytest

from pretrain_helpers import run_cli


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optim.peak_rl=1e-3"], "unknown key 'optim.peak_rl'; did you mean 'optim.peak_lr'?"),
        (["run.steps=ten"], "run.steps: expected int, got 'ten'"),
        (["data.image_size=60"], "not divisible by the tubelet"),
        (["data.source=manifest", "data.manifests=[/nonexistent/train.jsonl]"], "/nonexistent/train.jsonl"),
        (["--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["run.batch_size=6", "run.grad_accumulation=4", "data.source=synthetic"], "divisible"),
        (
            ["run.batch_size=15", "run.grad_accumulation=2", "data.source=synthetic"],
            "run.batch_size=15 must be divisible by run.grad_accumulation x world size = 2 x 1",
        ),
        (["optim.grad_clip=0"], "optim.grad_clip must be > 0"),
        (["optim.grad_clip=-1"], "optim.grad_clip must be > 0"),
        (["optim.ema_end=-0.5"], "optim.ema_end must be in [0, 1]"),
        (["data.source=manifest", "data.manifests=[EMPTY]"], "empty.jsonl: the manifest has no entries"),
        (["data.source=manifest", "data.manifests=[BINARY]"], "binary.jsonl: not a text manifest"),
        (["data.shards=[/data/shards]"], "data.shards is set but data.source='atari' does not read it"),
        (["data.source=synthetic", "data.manifests=[a.jsonl]"], "data.manifests is set but data.source='synthetic'"),
    ],
)
@pytest.mark.slow
def test_bad_configs_give_one_line_error_and_nonzero_exit(overrides, message, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    overrides = [
        o.replace("EMPTY", str(tmp_path / "empty.jsonl")).replace("BINARY", str(tmp_path / "binary.jsonl"))
        for o in overrides
    ]
    result = run_cli(["pretrain", *overrides, f"run.out_dir={tmp_path / 'run'}", "model.encoder.depth=1"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_config_file_can_start_from_a_preset(tmp_path):
    from mjepa.pretrain_config import load_pretrain_config

    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny-cpu\nrun: {steps: 300}\n")
    config = load_pretrain_config(str(path), [])
    assert config.run.steps == 300 and config.run.batch_size == 16 and config.model.encoder.width == 192
    path.write_text("run: {steps: 20000}\n")  # without a base, the schema's (paper-scale) defaults
    assert load_pretrain_config(str(path), []).run.batch_size == 512
