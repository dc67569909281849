"""``mjepa demo``: the whole method on built-in data in under 20 minutes on a laptop-class CPU.

1. Generate AtariAV (real Atari gameplay with its real sound; cached after the first run).
2. Pretrain the ``tiny-cpu`` preset for as many steps as the time budget allows (or ``--steps``).
3. Probe three frozen encoders with audio, video and audio-visual input (attentive probe, several probe seeds): the
   shipped ``mjepa-tiny-atari`` (pretrained for hours on 104 games, docs/models.md), the one just trained, and a
   randomly initialised encoder of the same size; say by how much the shipped model beats random init on each input.
4. A->V and V->A retrieval through the cross-modal predictors and by cosine similarity.
5. Write ``report.md`` (tables, settings, timings) with the training curves and a probe chart in the run folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mjepa.commands import resolve_device, run_reporting_errors
from mjepa.data.atari.generate import DEFAULT_GAMES, generate_atari_av
from mjepa.eval.loading import load_model
from mjepa.eval.probe import ATARI_PROBE_HEADS, ProbeSettings
from mjepa.eval.report import common_label_groups, group_mean, write_results
from mjepa.eval.run_probe import EncoderResult, FeatureSettings, evaluate_over_seeds
from mjepa.eval.seed_spread import SeedSpread, beats
from mjepa.eval.tasks import TASKS, atari_splits
from mjepa.packaging import SHIPPED_MODELS, PretrainedFormatError, shipped_model_dir
from mjepa.pretrain_config import load_pretrain_config
from mjepa.terms import MODALITIES
from mjepa.train.loop import pretrain
from mjepa.train.plot import plot_run

# Share of the time budget given to pretraining; generation, the probes of three encoders over several probe seeds
# and retrieval (about 14 minutes on a 2-core CPU, docs/performance.md) take the rest, and more where they need it.
# The calibration's per-step time includes start-up, so pretraining usually takes less than its share.
PRETRAIN_SHARE = 0.3
SHIPPED, TRAINED, RANDOM = "shipped", "trained", "random-init"
# Test clips per game. The generator's default (15 % of 40 = 6 per game, 48 in all) leaves the rare event tags with
# 2-5 positives, so one clip's ranking moves the mAP by points; 30 per game (240 clips) gives each tag 25 or more.
# Scoring them adds seconds per probe; encoding them about half a minute per encoder and input.
DEMO_TEST_CLIPS_PER_GAME = 30


@dataclass(frozen=True)
class DemoPlan:
    """What one ``mjepa demo`` call runs, parsed once from its command line."""

    out: Path
    atari_dir: str
    games: tuple[str, ...]
    clips_per_game: int
    test_clips_per_game: int
    minutes: float
    steps: int | None  # None: as many as fit in ``minutes`` (calibrated)
    probe_epochs: int
    probe_seeds: int  # probes trained per (encoder, input), seeds 0..n-1: their spread is the comparison's noise
    seed: int
    overrides: tuple[str, ...]
    shipped: str | None  # shipped model name or model folder to compare; None: only the model trained here

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoPlan:
        if args.probe_seeds < 1:
            raise ValueError(f"--probe-seeds must be >= 1, got {args.probe_seeds}")
        shipped = default_shipped() if args.shipped is None else (args.shipped or None)
        return cls(
            Path(args.out),
            args.atari_dir,
            tuple(g for g in args.games.split(",") if g),
            args.clips_per_game,
            args.test_clips_per_game,
            args.minutes,
            args.steps,
            args.probe_epochs,
            args.probe_seeds,
            args.seed,
            tuple(args.overrides),
            shipped,
        )


# The shipped model pretrained on AtariAV alone, the demo's data: the default mjepa-tiny also heard recorded sound.
DEMO_SHIPPED = "mjepa-tiny-atari"


def default_shipped() -> str | None:
    """``mjepa-tiny-atari`` when this installation holds its weights; otherwise None, said once."""
    try:
        shipped_model_dir(DEMO_SHIPPED)
    except PretrainedFormatError as err:
        print(f"demo: {err}; comparing the model trained here with random init only", flush=True)
        return None
    return DEMO_SHIPPED


def spreads(results: list[EncoderResult], label_group: str | None = None) -> dict[tuple[str, str], SeedSpread]:
    """Scores grouped by (encoder, input) over the probe seeds: the whole mAP, or (``label_group``) the mAP over
    that group's tags alone (``event`` for ``event:*``), averaged over folds."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for result in results:
        value = result.score if label_group is None else group_mean(result, label_group)
        grouped.setdefault((result.encoder, result.modality), []).append(value)
    return {key: SeedSpread(tuple(scores)) for key, scores in grouped.items()}


def demo_overrides(plan: DemoPlan, steps: int) -> list[str]:
    warmup = max(1, steps // 10)
    cooldown = max(0, steps // 4)
    return [
        f"run.out_dir={plan.out / 'pretrain'}",
        f"data.atari_dir={plan.atari_dir}",
        f"data.atari_games=[{','.join(plan.games)}]",
        f"data.atari_clips_per_game={plan.clips_per_game}",
        f"data.atari_test_clips_per_game={plan.test_clips_per_game}",
        f"run.steps={steps}",
        f"optim.warmup_steps={warmup}",
        f"optim.cooldown_steps={cooldown}",
        f"run.checkpoint_every={max(1, steps // 4)}",
        f"run.seed={plan.seed}",
        *plan.overrides,
    ]


def calibrate_steps(plan: DemoPlan) -> int:
    """Steps that fit the pretraining share of ``--minutes``, from the time of two synthetic steps at the demo
    shapes (data loading runs in parallel workers and is not the bottleneck at these shapes)."""
    probe_dir = plan.out / "calibration"
    shutil.rmtree(probe_dir, ignore_errors=True)  # a left-over run would resume and time nothing
    config = load_pretrain_config(
        "tiny-cpu",
        demo_overrides(plan, 3)
        + ["data.source=synthetic", f"run.out_dir={probe_dir}", "run.checkpoint_every=1000", "run.log_every=1000"],
    )
    started = time.perf_counter()
    pretrain(config)
    per_step = (time.perf_counter() - started) / 3
    shutil.rmtree(probe_dir, ignore_errors=True)
    budget = PRETRAIN_SHARE * plan.minutes * 60
    steps = max(10, int(budget / per_step))
    print(f"demo: {per_step:.1f} s per step here -> {steps} pretraining steps in {budget / 60:.1f} min", flush=True)
    return steps


def probe_all(checkpoint: Path, plan: DemoPlan) -> list[EncoderResult]:
    """Every encoder's score on every input for every probe seed; features are encoded once per encoder and input
    and cached, so a further probe seed only trains the probe again."""
    task = TASKS["atari"]
    folds = [atari_splits(plan.atari_dir)]
    settings = ProbeSettings(
        protocol="attentive",
        learning_rates=(1e-3,),
        weight_decays=(0.05,),
        epochs=plan.probe_epochs,
        batch_size=32,
        num_heads=ATARI_PROBE_HEADS,
    )
    device = resolve_device()
    encoders = [(TRAINED, load_model(checkpoint))]
    if plan.shipped is not None:
        encoders.insert(0, (SHIPPED, load_model(plan.shipped)))
    # The random-init baseline has the architecture of the first encoder compared (the shipped one when there is one).
    encoders.append((RANDOM, load_model(plan.shipped or checkpoint, random_init=True)))
    results = []
    for label, loaded in encoders:
        for modality in MODALITIES:
            started = time.perf_counter()
            print(f"demo: probing the {label} encoder with {modality} input", flush=True)
            features = FeatureSettings(modality, cache_dir=plan.out / "features", device=device)
            over_seeds = evaluate_over_seeds(loaded, label, task, folds, settings, features, range(plan.probe_seeds))
            results += over_seeds
            print(
                f"demo:   mAP {SeedSpread(tuple(r.score for r in over_seeds))} over {plan.probe_seeds} probe seeds "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return results


def retrieval(checkpoint: Path, plan: DemoPlan) -> dict:
    from mjepa.eval.retrieve_command import build_parser, run

    out = plan.out / "retrieval.json"
    run(
        build_parser().parse_args(
            ["--checkpoint", str(checkpoint), "--atari-dir", plan.atari_dir, "--out", str(out), "--ks", "1,5,10"]
        )
    )
    return json.loads(out.read_text())


def comparison_lines(
    results: list[EncoderResult], probe_seeds: int, label_group: str | None = None, shipped: str = DEMO_SHIPPED
) -> list[str]:
    """The report's table: each encoder's mean ± std over probe seeds per input, and the margin over random init
    (of the whole mAP, or of one tag group's). ``shipped`` names the pretrained model compared."""
    by_key = spreads(results, label_group)
    encoders = [name for name in (SHIPPED, TRAINED, RANDOM) if any(key[0] == name for key in by_key)]
    compared = [name for name in encoders if name != RANDOM]
    shipped_label = f"shipped {shipped}" if shipped in SHIPPED_MODELS else Path(shipped).name
    names = {SHIPPED: shipped_label, TRAINED: "trained here", RANDOM: "random-init"}
    lines = [
        "| input | "
        + " | ".join(names[e] for e in encoders)
        + " | "
        + " | ".join(f"{names[e]} − random" for e in compared)
        + " |",
        "|---" * (1 + len(encoders) + len(compared)) + "|",
    ]
    for modality in MODALITIES:
        cells = [str(by_key[(e, modality)]) for e in encoders]
        random_spread = by_key[(RANDOM, modality)]
        for name in compared:
            spread = by_key[(name, modality)]
            verdict = (
                "beats random"
                if beats(spread, random_spread)
                else "behind random"
                if beats(random_spread, spread)
                else "within the spread"
            )
            cells.append(f"{100 * (spread.mean - random_spread.mean):+.1f} ({verdict})")
        lines.append(f"| {modality} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f'Mean ± standard deviation over {probe_seeds} probe seeds. "beats random": ahead by more than '
        'the larger standard deviation, with every probe seed above random init\'s best; "behind random": the '
        "same the other way round.",
    ]
    return lines


def report(
    out: Path, results: list[EncoderResult], retrieval_record: dict, settings: dict, timings: dict, probe_seeds: int
) -> Path:
    shipped = settings.get("shipped") or DEMO_SHIPPED
    table = comparison_lines(results, probe_seeds, shipped=shipped)
    lines = [
        "# mjepa demo",
        "",
        "Frozen attentive probe on AtariAV (mAP over game and event tags, test split; head "
        "chosen on the validation split).",
        "",
        *table,
    ]
    for group in common_label_groups(results):
        lines += ["", f"The same probes, mAP over the `{group}:*` tags alone:", ""]
        lines += comparison_lines(results, probe_seeds, group, shipped)[:-2]  # the table without its repeated footnote
    lines += [
        "",
        f"Retrieval on {retrieval_record['items']} test clips by the model trained here (chance R@1 = "
        f"{100 * retrieval_record['chance_recall_at_1']:.1f} %):",
        "",
        "| method | direction | R@1 | R@5 | R@10 |",
        "|---|---|---|---|---|",
    ]
    for method, values in retrieval_record["results"].items():
        for direction, name in (("a2v", "A->V"), ("v2a", "V->A")):
            recalls = [100 * values[f"retrieval/{method}/{direction}/R@{k}"] for k in (1, 5, 10)]
            lines.append(f"| {method} | {name} | " + " | ".join(f"{r:.1f}" for r in recalls) + " |")
    lines += [
        "",
        "![training curves](curves.png)",
        "",
        "![probe results](probe/results.png)",
        "",
        "Settings: " + json.dumps(settings),
        "",
        "Timings (s): " + json.dumps(timings),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    print("\n".join(lines[: 4 + len(table)]), flush=True)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help=f"time budget; pretraining gets {100 * PRETRAIN_SHARE:.0f} %% of it and the probes take "
        "what they need, about 13 min on 2 cores (default 15)",
    )
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default: fit --minutes)")
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    parser.add_argument("--atari-dir", default="data/atari", help="AtariAV cache folder (default data/atari)")
    parser.add_argument("--games", default=",".join(DEFAULT_GAMES), help="comma-separated Atari games")
    parser.add_argument(
        "--clips-per-game",
        type=int,
        default=40,
        help="AtariAV clips per game; 70 %% of them train the model and the probes (default 40)",
    )
    parser.add_argument(
        "--test-clips-per-game",
        type=int,
        default=DEMO_TEST_CLIPS_PER_GAME,
        help=f"AtariAV test clips per game the probes are scored on (default {DEMO_TEST_CLIPS_PER_GAME})",
    )
    parser.add_argument("--probe-epochs", type=int, default=4)
    parser.add_argument(
        "--probe-seeds",
        type=int,
        default=3,
        help="probes trained per encoder and input, to measure the spread (default 3)",
    )
    parser.add_argument(
        "--shipped",
        default=None,
        help="shipped model name or model folder to compare with the model trained here and random "
        "init (default mjepa-tiny-atari, the model pretrained on AtariAV alone; '' to leave it out)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pretraining config override (repeatable), e.g. --set optim.peak_lr=5e-4",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    plan = DemoPlan.from_args(args)
    out = plan.out
    timings, started = {}, time.perf_counter()
    generate_atari_av(
        plan.atari_dir,
        games=plan.games,
        clips_per_game=plan.clips_per_game,
        test_clips_per_game=plan.test_clips_per_game,
    )
    timings["data"] = time.perf_counter() - started
    steps = plan.steps if plan.steps is not None else calibrate_steps(plan)
    config = load_pretrain_config("tiny-cpu", demo_overrides(plan, steps))
    mark = time.perf_counter()
    pretrain(config)
    timings["pretrain"] = time.perf_counter() - mark
    checkpoint = out / "pretrain" / "checkpoints" / "latest.pt"
    mark = time.perf_counter()
    results = probe_all(checkpoint, plan)
    write_results(
        out / "probe",
        "atari",
        {
            "protocol": "attentive",
            "checkpoint": str(checkpoint),
            "shipped": plan.shipped,
            "probe_seeds": plan.probe_seeds,
        },
        results,
    )
    timings["probes"] = time.perf_counter() - mark
    mark = time.perf_counter()
    retrieval_record = retrieval(checkpoint, plan)
    timings["retrieval"] = time.perf_counter() - mark
    plot_run(out / "pretrain", out / "curves.png")
    timings["total"] = time.perf_counter() - started
    settings = {
        "steps": steps,
        "batch_size": config.run.batch_size,
        "games": list(plan.games),
        "clips_per_game": plan.clips_per_game,
        "test_clips_per_game": plan.test_clips_per_game,
        "probe_epochs": plan.probe_epochs,
        "probe_seeds": plan.probe_seeds,
        "shipped": plan.shipped,
        "overrides": list(plan.overrides),
    }
    path = report(
        out, results, retrieval_record, settings, {k: round(v, 1) for k, v in timings.items()}, plan.probe_seeds
    )
    print(f"demo: report in {path} ({timings['total'] / 60:.1f} min)", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa demo", run, build_parser().parse_args(argv))
