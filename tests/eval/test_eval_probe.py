import pytest
import torch

from mjepa.eval.features import FeatureSet, cached_features
from mjepa.eval.probe import ProbeSettings, predict, train_probe_grid


def _one_hot(labels, classes):
    return torch.nn.functional.one_hot(labels, classes).float()


def test_probe_learns_a_linearly_separable_task():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=gen) * 3
    labels = torch.randint(0, 4, (200,), generator=gen)
    tokens = centres[labels].unsqueeze(1) + 0.3 * torch.randn(200, 6, 16, generator=gen)
    settings = ProbeSettings(protocol="linear", learning_rates=(1e-2,), weight_decays=(0.0,), epochs=30)
    (probe,) = train_probe_grid(settings, tokens[:150], None, _one_hot(labels[:150], 4), multi_label=False)
    accuracy = (predict(probe, tokens[150:], None).argmax(1) == labels[150:]).float().mean()
    assert accuracy >= 0.98


def _xor_tokens(n, gen):
    """One marked token per example carries two signs; the label is their XOR. Mean pooling over 8 tokens leaves a
    linearly inseparable problem; attending to the marked token solves it."""
    tokens = torch.randn(n, 8, 16, generator=gen) * 0.5
    tokens[..., 2] = 0.0
    signs = torch.randint(0, 2, (n, 2), generator=gen) * 2 - 1
    where = torch.randint(0, 8, (n,), generator=gen)
    rows = torch.arange(n)
    tokens[rows, where, 0] = signs[:, 0].float() * 2
    tokens[rows, where, 1] = signs[:, 1].float() * 2
    tokens[rows, where, 2] = 3.0  # the marker
    labels = (signs[:, 0] * signs[:, 1] > 0).long()
    return tokens, labels


@pytest.mark.slow
def test_attentive_probe_beats_linear_on_a_task_that_needs_attention():
    gen = torch.Generator().manual_seed(1)
    tokens, labels = _xor_tokens(600, gen)
    targets = _one_hot(labels, 2)
    accuracy = {}
    for protocol in ("linear", "attentive"):
        settings = ProbeSettings(
            protocol=protocol, learning_rates=(3e-3,), weight_decays=(0.0,), epochs=25, batch_size=50, num_heads=2
        )
        (probe,) = train_probe_grid(settings, tokens[:500], None, targets[:500], multi_label=False)
        accuracy[protocol] = float((predict(probe, tokens[500:], None).argmax(1) == labels[500:]).float().mean())
    assert accuracy["linear"] < 0.7
    assert accuracy["attentive"] > 0.9
    assert accuracy["attentive"] > accuracy["linear"] + 0.2


def test_views_average_probabilities_not_logits():
    probe = torch.nn.Linear(4, 3)
    tokens = torch.randn(6, 1, 4) * 5  # 2 items x 3 views; large logits, where the two averages differ

    class Wrapped(torch.nn.Module):
        def forward(self, x, valid=None):
            return probe(x[:, 0])

    with torch.no_grad():
        single = predict(Wrapped(), tokens, None, views=3, multi_label=False, device="cpu")
        multi = predict(Wrapped(), tokens, None, views=3, multi_label=True, device="cpu")
        logits = probe(tokens[3:, 0])
    assert single.shape == multi.shape == (2, 3)
    assert torch.allclose(single[1], torch.softmax(logits, -1).mean(0), atol=1e-6)
    assert torch.allclose(multi[1], torch.sigmoid(logits).mean(0), atol=1e-6)
    assert not torch.allclose(single[1], torch.softmax(logits.mean(0), -1), atol=1e-3)


def test_probes_train_and_predict_on_the_requested_device():
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    gen = torch.Generator().manual_seed(0)
    tokens, labels = torch.randn(40, 3, 8, generator=gen), torch.randint(0, 2, (40,), generator=gen)
    for device in devices:
        settings = ProbeSettings(
            protocol="linear", learning_rates=(1e-2,), weight_decays=(0.0,), epochs=2, batch_size=16
        )
        (probe,) = train_probe_grid(settings, tokens, None, _one_hot(labels, 2), multi_label=False, device=device)
        assert all(p.device.type == device.type for p in probe.parameters())
        probabilities = predict(probe, tokens, None, multi_label=False)
        assert probabilities.device.type == "cpu" and torch.allclose(probabilities.sum(1), torch.ones(40))


def test_feature_cache_is_used_on_the_second_run(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return FeatureSet(torch.randn(3, 2, 4).half(), torch.eye(3), 1)

    key = {"encoder": "abc", "modality": "audio"}
    first, hit_first = cached_features(tmp_path, key, compute)
    second, hit_second = cached_features(tmp_path, key, compute)
    assert calls == [1] and not hit_first and hit_second
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.labels, second.labels)
    cached_features(tmp_path, {**key, "modality": "video"}, compute)
    assert calls == [1, 1]  # a different key encodes again


def test_heads_trained_together_match_heads_trained_one_by_one():
    gen = torch.Generator().manual_seed(1)
    tokens, targets = torch.randn(48, 5, 16, generator=gen), (torch.rand(48, 3, generator=gen) < 0.3).float()
    results = {}
    for per_pass in (1, 3, None):
        settings = ProbeSettings(
            learning_rates=(1e-3, 3e-3),
            weight_decays=(0.0, 0.1, 0.4),
            epochs=2,
            batch_size=16,
            num_heads=2,
            heads_per_pass=per_pass,
        )
        probes = train_probe_grid(settings, tokens, None, targets, multi_label=True)
        results[per_pass] = torch.stack([predict(p, tokens, None, multi_label=True) for p in probes])
    assert results[1].shape == (6, 48, 3)
    assert torch.allclose(results[1], results[3], atol=1e-5) and torch.allclose(results[1], results[None], atol=1e-5)
    assert not torch.allclose(results[1][0], results[1][5], atol=1e-3)  # the heads differ: each has its own lr, wd


def test_per_head_adamw_matches_torch_adamw():
    from mjepa.eval.probe import StackedAdamW

    gen = torch.Generator().manual_seed(2)
    start, grads = torch.randn(2, 4, generator=gen), [torch.randn(2, 4, generator=gen) for _ in range(3)]
    stacked = {"w": start.clone().requires_grad_(True)}
    ours = StackedAdamW(stacked, [1e-2, 3e-2], [0.1, 0.4])
    theirs = [torch.nn.Parameter(start[i].clone()) for i in range(2)]
    reference = [
        torch.optim.AdamW([theirs[i]], lr=lr, weight_decay=wd) for i, (lr, wd) in enumerate([(1e-2, 0.1), (3e-2, 0.4)])
    ]
    for grad in grads:
        stacked["w"].grad = grad.clone()
        ours.step(0.5)
        for i in range(2):
            for group in reference[i].param_groups:
                group["lr"] = [1e-2, 3e-2][i] * 0.5
            theirs[i].grad = grad[i].clone()
            reference[i].step()
    assert torch.allclose(stacked["w"], torch.stack([t.detach() for t in theirs]), atol=1e-6)


def test_class_balanced_probe_sampling_draws_rare_classes_as_often_as_common_ones(monkeypatch):
    from mjepa.eval import probe as probe_module

    targets = torch.zeros(100, 2)
    targets[:90, 0] = 1.0  # 90 rows of a common class, 10 of a rare one
    targets[90:, 1] = 1.0
    drawn = []
    original = probe_module.probe_loss

    def recording(logits, y, multi_label, batch_rows=None):
        drawn.append(y.argmax(1))
        return original(logits, y, multi_label, batch_rows)

    monkeypatch.setattr(probe_module, "probe_loss", recording)
    settings = ProbeSettings(
        protocol="linear", learning_rates=(1e-3,), weight_decays=(0.0,), epochs=20, batch_size=50, class_balanced=True
    )
    train_probe_grid(settings, torch.randn(100, 2, 4), None, targets, multi_label=True)
    rare_share = float(torch.cat(drawn).float().mean())
    assert 0.4 < rare_share < 0.6  # about half the draws, against 10 % without balancing


@pytest.mark.parametrize("protocol,variant", [("attentive", "mjepa"), ("attentive", "vjepa2"), ("linear", "mjepa")])
def test_stacked_forward_computes_each_heads_own_logits_with_padding(protocol, variant):
    from torch.func import stack_module_state

    from mjepa.eval.probe import build_probe
    from mjepa.eval.stacked_probe import attentive_logits, linear_logits

    torch.manual_seed(3)
    settings = ProbeSettings(protocol=protocol, num_heads=4, variant=variant)
    probes = [build_probe(settings, 32, 6) for _ in range(3)]
    for probe in probes:  # away from the shared initial values, so each head really differs
        for param in probe.parameters():
            param.data += 0.05 * torch.randn_like(param)
    params, _ = stack_module_state(probes)
    tokens, valid = torch.randn(5, 9, 32), torch.ones(5, 9, dtype=torch.bool)
    valid[2, 5:] = False
    expected = torch.stack([probe(tokens, valid) for probe in probes])
    if protocol == "attentive":
        got = attentive_logits(params, tokens, valid, num_heads=4, num_blocks=3)
    else:
        got = linear_logits(params, tokens, valid)
    assert got.shape == (3, 5, 6) and torch.allclose(got, expected, atol=1e-5)


def test_heads_per_pass_auto_is_one_on_a_cpu_and_checked():
    from mjepa.eval.probe import resolve_heads_per_pass

    assert resolve_heads_per_pass(ProbeSettings(), torch.device("cpu"), 512, 1024) == 1
    assert resolve_heads_per_pass(ProbeSettings(heads_per_pass=None), torch.device("cpu"), 512, 1024) == 20
    assert resolve_heads_per_pass(ProbeSettings(heads_per_pass=50), torch.device("cpu"), 512, 1024) == 20
    with pytest.raises(ValueError, match="heads_per_pass"):
        ProbeSettings(heads_per_pass=0)


def test_vjepa2_probe_is_v_jepa_2s_classifier_with_its_training():
    import math

    from mjepa.eval.probe import AttentiveProbe, vjepa2_probe_settings

    settings = vjepa2_probe_settings()
    assert (settings.batch_size, settings.warmup_epochs, settings.epochs, len(settings.grid())) == (256, 0, 20, 20)
    torch.manual_seed(0)
    probe = AttentiveProbe(64, 5, num_heads=4, self_attention_blocks=3, variant="vjepa2").requires_grad_(False)
    names = {name for name, _ in probe.named_parameters()}
    assert not any(n.startswith(("cross.norm_query", "norm.")) for n in names)  # no query norm, no norm before head
    assert "cross.norm_tokens.weight" in names and "cross.norm_mlp.weight" in names
    assert probe.head.bias.abs().sum() == 0 and probe.cross.attn.in_proj_bias.abs().sum() == 0
    assert abs(float(probe.head.weight.std()) - 0.02) < 0.004  # truncated normal, sigma 0.02
    # Output projections of block k divided by sqrt(2k); the cross block's MLP like the last block's.
    fc1_std = float(probe.blocks[2].mlp.fc1.weight.std())
    assert abs(float(probe.blocks[2].mlp.fc2.weight.std()) * math.sqrt(6) - fc1_std) < 0.003
    assert abs(float(probe.cross.mlp.fc2.weight.std()) * math.sqrt(6) - fc1_std) < 0.003
    mjepa_probe = AttentiveProbe(64, 5, num_heads=4, variant="mjepa")
    assert isinstance(mjepa_probe.norm, torch.nn.LayerNorm)
    with pytest.raises(ValueError, match="probe variant"):
        ProbeSettings(variant="dino")


def test_vjepa2_probe_learns_without_warm_up():
    from mjepa.eval.probe import vjepa2_probe_settings

    gen = torch.Generator().manual_seed(2)

    def split(rows):  # the class moves one channel of every token (a layer norm would erase a uniform shift)
        labels = torch.randint(0, 2, (rows,), generator=gen)
        tokens = torch.randn(rows, 4, 16, generator=gen)
        tokens[:, :, 0] += 2.0 * (2 * labels.view(-1, 1).float() - 1)
        return tokens, labels

    (train_tokens, train_labels), (test_tokens, test_labels) = split(64), split(128)
    settings = vjepa2_probe_settings(
        learning_rates=(3e-3,), weight_decays=(0.01,), epochs=10, batch_size=16, num_heads=2
    )
    probe = train_probe_grid(settings, train_tokens, None, _one_hot(train_labels, 2), multi_label=False)[0]
    accuracy = (predict(probe, test_tokens, None, multi_label=False).argmax(1) == test_labels).float().mean()
    assert accuracy > 0.95


def test_tag_groups_are_scored_apart():
    from mjepa.eval.run_probe import group_scores, label_groups

    vocabulary = ["event:reward", "event:silent", "game:pong", "game:seaquest"]
    groups = label_groups(vocabulary)
    assert groups == {"event": [0, 1], "game": [2, 3]}
    assert label_groups(["dog", "cat"]) == {} and label_groups(["game:a", "game:b"]) == {}
    targets = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 1]], dtype=torch.float32)
    perfect_games = torch.tensor([[0.2, 0.5, 0.9, 0.1], [0.9, 0.5, 0.1, 0.9], [0.1, 0.5, 0.2, 0.8]])
    scores = group_scores(perfect_games, targets, groups)
    assert scores["game"] == pytest.approx(1.0)
    # event:silent has no positive and is left out; event:reward's positives rank 2nd and 3rd
    assert scores["event"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert set(group_scores(perfect_games, targets * torch.tensor([0, 0, 1, 1]), groups)) == {"game"}
