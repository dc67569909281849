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
    ],
)
def test_bad_configs_give_one_line_error_and_nonzero_exit(overrides, message, tmp_path):
    result = run_cli(["pretrain", *overrides, f"run.out_dir={tmp_path / 'run'}", "model.encoder.depth=1"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr
