"""``mjepa track RUN_DIR [RUN_DIR ...]``: evaluate every saved checkpoint of a run, to see whether loss and downstream
agree.

For each periodic checkpoint (``RUN_DIR/checkpoints/step_XXXXXXXX.pt``) it measures

- the held-out pretraining loss of every term, on the same clips with the same masks for every checkpoint
  (``mjepa.experiments.heldout``), and
- the frozen-probe score of the target encoder (or, with ``--encoder context``, the context encoder) with each
  requested modality,

and writes ``track.json``, ``track.md`` and ``track.png`` (loss terms and probe scores against the step). This is
the check users of JEPA codebases asked for: a training loss that rises late while downstream scores fall is a
recipe problem; a rise with steady or rising scores is a target that got harder, not a regression.

Each checkpoint's result is written to ``OUT/steps/step_XXXXXXXX.json`` when done, with the settings that produced
it; re-running with the same settings skips it, and with other settings (probe seeds, modalities, held-out clips...)
scores it again, so a table never mixes records made under different settings.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from mjepa.commands import comma_choices, comma_integers, resolve_device, run_reporting_errors
from mjepa.eval.loading import load_model
from mjepa.eval.probe import ATARI_PROBE_HEADS, ProbeSettings
from mjepa.eval.probe_command import task_folds
from mjepa.eval.run_probe import FeatureSettings, evaluate_over_seeds
from mjepa.eval.seed_spread import SeedSpread
from mjepa.eval.tasks import TASKS
from mjepa.experiments.heldout import heldout_batches, heldout_evaluation
from mjepa.models.mjepa import ENCODER_CHOICES
from mjepa.packaging import is_model_dir
from mjepa.terms import MODALITIES
from mjepa.train.checkpoint import periodic_checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa track", description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="pretraining run folder(s) (with checkpoints/step_XXXXXXXX.pt), model folders "
        "(save_pretrained), or a track.json written earlier, drawn in the --compare-out figure "
        "as it is (its checkpoints may be gone)",
    )
    parser.add_argument(
        "--task",
        default="atari",
        choices=sorted(t for t in TASKS if not TASKS[t].audio_only),
        help="probe task with video (default atari); its first test split holds the held-out clips",
    )
    parser.add_argument("--atari-dir", default="data/atari", help="AtariAV folder (generated when missing)")
    parser.add_argument("--train-manifest", help="training items (manifest-based tasks)")
    parser.add_argument("--val-manifest", help="validation items (manifest-based tasks, optional)")
    parser.add_argument("--test-manifest", help="test items (manifest-based tasks)")
    parser.add_argument(
        "--modalities",
        default="audio,video,av",
        help="comma-separated probe inputs among audio, video, av; '' skips probing (default audio,video,av)",
    )
    parser.add_argument("--steps", default="", help="comma-separated checkpoint steps to evaluate (default: all)")
    parser.add_argument(
        "--probe-steps",
        default="",
        help="comma-separated steps that also get probes (default: every scored step); the held-out "
        "loss is cheap, the probes are not",
    )
    parser.add_argument(
        "--include-init",
        action="store_true",
        help="also score step 0: the run's initial weights, rebuilt from its config and seed",
    )
    parser.add_argument(
        "--encoder",
        choices=ENCODER_CHOICES,
        default="target",
        help="encoder the probes read (default target; context writes to RUN_DIR/track-context)",
    )
    parser.add_argument("--probe-epochs", type=int, default=4)
    parser.add_argument(
        "--probe-seeds",
        default="0,1,2",
        help="comma-separated probe seeds; scores are the mean (and std) over them (default 0,1,2)",
    )
    parser.add_argument("--probe-lr", type=float, default=1e-3)
    parser.add_argument("--probe-wd", type=float, default=0.05)
    parser.add_argument("--heldout-items", type=int, default=64, help="held-out clips for the loss (default 64)")
    parser.add_argument("--mask-seed", type=int, default=1234, help="seed of the fixed held-out masks")
    parser.add_argument("--batch-size", type=int, default=16, help="clips encoded at once (default 16)")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    parser.add_argument("--out", default=None, help="output folder of a single run (default RUN_DIR/track)")
    parser.add_argument(
        "--compare-out",
        default=None,
        metavar="PNG",
        help="with several runs: one figure with all of them on shared axes",
    )
    return parser


def parse_seeds(text: str) -> list[int]:
    seeds = comma_integers(text, "--probe-seeds")
    if not seeds:
        raise ValueError("--probe-seeds: give at least one seed")
    return seeds


def select_checkpoints(run_dir: Path, steps_text: str) -> list[tuple[int, Path]]:
    """(step, path) of the run's periodic checkpoints, optionally only the listed steps (each must exist). A model
    folder (``save_pretrained``) is one checkpoint, at the step it was saved at."""
    if is_model_dir(run_dir):
        record = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        if record.get("parts", "all") != "all":
            raise ValueError(
                f"{run_dir} holds only the target encoder; track's held-out losses need every part "
                "(save_pretrained(..., parts='all'))"
            )
        found = {int(record.get("step", 0)): run_dir}
    else:
        found = dict(periodic_checkpoints(run_dir / "checkpoints"))
    if not found:
        raise ValueError(
            f"{run_dir / 'checkpoints'} holds no step_XXXXXXXX.pt checkpoints "
            f"(set run.checkpoint_every and run.keep_checkpoints when pretraining)"
        )
    if not steps_text:
        return sorted(found.items())
    wanted = comma_integers(steps_text, "--steps")
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ValueError(
            f"--steps: no checkpoint for step {missing[0]} in {run_dir / 'checkpoints'}; "
            f"saved steps are {', '.join(map(str, sorted(found)))}"
        )
    return [(s, found[s]) for s in sorted(set(wanted))]


@dataclass(frozen=True)
class TrackPlan:
    """How each checkpoint is scored, parsed once from the command line."""

    task: str
    modalities: tuple[str, ...]
    probe_seeds: tuple[int, ...]
    probe_steps: frozenset[int] | None  # None: probe every scored step
    probe_epochs: int
    probe_lr: float
    probe_wd: float
    encoder: str
    batch_size: int
    workers: int
    heldout_items: int
    mask_seed: int
    steps: str  # the --steps selection, as given
    include_init: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrackPlan:
        probe_steps = frozenset(comma_integers(args.probe_steps, "--probe-steps")) if args.probe_steps else None
        return cls(
            args.task,
            tuple(comma_choices(args.modalities, "--modalities", "modality", MODALITIES)),
            tuple(parse_seeds(args.probe_seeds)),
            probe_steps,
            args.probe_epochs,
            args.probe_lr,
            args.probe_wd,
            args.encoder,
            args.batch_size,
            args.workers,
            args.heldout_items,
            args.mask_seed,
            args.steps,
            args.include_init,
        )


def probe_scores(
    loaded, modalities: Sequence[str], plan: TrackPlan, folds, cache_dir: Path, device: torch.device
) -> dict:
    """Per modality: the probe's test score for each probe seed, their mean and sample std.

    The attentive probe trained for a few epochs moves by several points between seeds; the mean over seeds is what
    a trend over checkpoints is read from. Features are encoded once per checkpoint and modality (cached)."""
    task = TASKS[plan.task]
    scores = {}
    settings = ProbeSettings(
        protocol="attentive",
        learning_rates=(plan.probe_lr,),
        weight_decays=(plan.probe_wd,),
        epochs=plan.probe_epochs,
        batch_size=32,
        num_heads=ATARI_PROBE_HEADS,
    )
    for modality in modalities:
        features = FeatureSettings(modality, -1, plan.encoder, plan.batch_size, plan.workers, cache_dir, device)
        results = evaluate_over_seeds(loaded, "trained", task, folds, settings, features, plan.probe_seeds)
        scores[modality] = SeedSpread(tuple(r.score for r in results)).to_dict()
    return scores


def probed_modalities(plan: TrackPlan, step: int) -> list[str]:
    return list(plan.modalities) if plan.probe_steps is None or step in plan.probe_steps else []


def scoring_settings(plan: TrackPlan, step: int) -> dict:
    """What a checkpoint's record depends on besides the checkpoint itself: a saved record is reused only when these
    match, so a run first tracked without probes (or with other probe seeds) is not read back as if it had them."""
    return {
        "task": plan.task,
        "encoder": plan.encoder,
        "modalities": probed_modalities(plan, step),
        "probe_seeds": list(plan.probe_seeds),
        "probe_epochs": plan.probe_epochs,
        "probe_lr": plan.probe_lr,
        "probe_wd": plan.probe_wd,
        "heldout_items": plan.heldout_items,
        "mask_seed": plan.mask_seed,
    }


def saved_settings(record: dict) -> dict | None:
    """The settings a saved record was scored with (None for records that predate saving them: scored again)."""
    return record.get("settings")


def track_checkpoint(step: int, path: Path, plan: TrackPlan, folds, batches, out: Path, device: torch.device) -> dict:
    """Score one checkpoint; step 0 is the run's initialisation, rebuilt from the config and seed of ``path``."""
    started = time.perf_counter()
    if step == 0:
        config = load_model(path).config
        if config.run.init_from:
            raise ValueError(
                f"--include-init: {path} comes from a run that started from run.init_from="
                f"{config.run.init_from}; score that checkpoint instead"
            )
        loaded = load_model(path, random_init=True, init_seed=config.run.seed)
    else:
        loaded = load_model(path)
    heldout = heldout_evaluation(loaded, batches, plan.mask_seed, device)
    settings = scoring_settings(plan, step)
    scores = probe_scores(loaded, settings["modalities"], plan, folds, out / "features", device)
    return {
        "step": step,
        "checkpoint": str(path),
        "settings": settings,
        "heldout_losses": heldout.losses,
        "heldout_collapse": heldout.collapse,
        "heldout_variance_shares": heldout.variance_shares,
        "probe_scores": scores,
        "probe_metric": TASKS[plan.task].metric,
        "seconds": time.perf_counter() - started,
    }


def table_markdown(records: list[dict]) -> str:
    terms = [t for t in ("loss", "intra_A", "intra_V", "intra_AV") if t in records[0]["heldout_losses"]]
    ranks = [
        k for k in ("effective_rank_A", "effective_rank_V", "effective_rank_AV") if k in records[0]["heldout_collapse"]
    ]
    modalities = [m for m in MODALITIES if any(m in r["probe_scores"] for r in records)]
    metric = records[0]["probe_metric"]
    head = [
        "step",
        *(f"held-out {t}" for t in terms),
        *(f"rank {k.rsplit('_', 1)[1]}" for k in ranks),
        *(f"{m} probe {metric}" for m in modalities),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        probe = r["probe_scores"]
        cells = [
            str(r["step"]),
            *(f"{r['heldout_losses'][t]:.4f}" for t in terms),
            *(f"{r['heldout_collapse'][k]:.1f}" for k in ranks),
            *(f"{100 * probe[m]['mean']:.1f} ± {100 * probe[m]['std']:.1f}" if m in probe else "–" for m in modalities),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shares_markdown(records: list[dict], shown: int = 3) -> str:
    """Per step and mode, the variance share (%) of the pooled targets' ``shown`` leading directions; records
    written before these were recorded show "–"."""
    modes = sorted({m for r in records for m in r.get("heldout_variance_shares", {})}, key=("A", "V", "AV").index)
    if not modes:
        return ""
    head = ["step", *(f"{mode}: top {shown} directions (% of variance)" for mode in modes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        shares = r.get("heldout_variance_shares", {})
        cells = [" / ".join(f"{100 * v:.0f}" for v in shares[m][:shown]) if shares.get(m) else "–" for m in modes]
        lines.append("| " + " | ".join([str(r["step"]), *cells]) + " |")
    return "\n".join(lines)


def no_probes_panel(ax) -> None:
    """Held-out tracks only (``--modalities ''``): say so rather than draw empty axes."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no probes (--modalities '')", ha="center", va="center")


def plot_records(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4))
    for term in sorted(records[0]["heldout_losses"]):
        if term.startswith("intra_") or term.startswith("cross_"):
            left.plot(
                steps,
                [r["heldout_losses"][term] for r in records],
                marker="o",
                linewidth=1.2,
                label=term,
                linestyle="-" if term.startswith("intra_") else ":",
            )
    left.set_title("held-out loss (fixed clips and masks, log scale)")
    left.set_yscale("log")  # the step-0 loss is several times the late ones; late changes of a few % must show
    left.set_xlabel("step")
    left.legend(fontsize=7)
    for key in sorted(k for k in records[0]["heldout_collapse"] if k.startswith("effective_rank_")):
        middle.plot(steps, [r["heldout_collapse"][key] for r in records], marker="o", label=key)
    middle.set_title("effective rank of pooled targets (held-out clips)")
    middle.set_xlabel("step")
    middle.legend(fontsize=7)
    for modality in MODALITIES:
        probed = [r for r in records if modality in r["probe_scores"]]
        if probed:
            means = [100 * r["probe_scores"][modality]["mean"] for r in probed]
            stds = [100 * r["probe_scores"][modality]["std"] for r in probed]
            right.errorbar([r["step"] for r in probed], means, yerr=stds, marker="o", capsize=3, label=modality)
    if any(r["probe_scores"] for r in records):
        right.set_title(f"frozen attentive probe ({records[0]['probe_metric']}, %, mean ± std over probe seeds)")
        right.set_xlabel("step")
        right.legend(fontsize=8)
    else:
        no_probes_panel(right)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def track_run(run_dir: Path, out: Path, plan: TrackPlan, folds, device: torch.device) -> dict:
    """Score the run's checkpoints (resuming from ``out/steps``) and write its track.json, track.md and track.png."""
    checkpoints = select_checkpoints(run_dir, plan.steps)
    if plan.include_init:  # step 0: the weights the run started from, rebuilt from the first checkpoint's config
        checkpoints = [(0, checkpoints[0][1]), *checkpoints]
    (out / "steps").mkdir(parents=True, exist_ok=True)
    frontend = load_model(checkpoints[0][1]).frontend
    batches, skipped = heldout_batches(folds[0].test, frontend, plan.batch_size, plan.workers, plan.heldout_items)
    for item in skipped:
        print(f"track: skipped held-out item {item.index} ({item.path}): {item.reason}", flush=True)
    records = []
    for step, path in checkpoints:
        done = out / "steps" / f"step_{step:08d}.json"
        if done.exists():
            saved = json.loads(done.read_text())
            if saved_settings(saved) == scoring_settings(plan, step):
                records.append(saved)
                continue
            print(
                f"track: {run_dir.name} step {step}: the saved record in {done} was made with other settings; "
                f"scoring it again",
                flush=True,
            )
        record = track_checkpoint(step, path, plan, folds, batches, out, device)
        done.write_text(json.dumps(record, indent=2))
        records.append(record)
        scores = ", ".join(f"{m} {100 * s['mean']:.1f}" for m, s in record["probe_scores"].items())
        print(
            f"track: {run_dir.name} step {step}: held-out loss {record['heldout_losses']['loss']:.4f}"
            + (f"; probe {scores}" if scores else ""),
            flush=True,
        )
    summary = {
        "run_dir": str(run_dir),
        "task": plan.task,
        "heldout_items": sum(b.batch_size for b in batches),
        "heldout_skipped": [item.path for item in skipped],
        "mask_seed": plan.mask_seed,
        "probe": {
            "encoder": plan.encoder,
            "protocol": "attentive",
            "epochs": plan.probe_epochs,
            "lr": plan.probe_lr,
            "weight_decay": plan.probe_wd,
            "seeds": plan.probe_seeds,
        },
        "records": records,
    }
    (out / "track.json").write_text(json.dumps(summary, indent=2))
    table, shares = table_markdown(records), shares_markdown(records)
    if shares:
        table += "\n\nHow the pooled targets' variance spreads over their leading directions:\n\n" + shares
    (out / "track.md").write_text(
        f"Checkpoints of {run_dir}: held-out loss on {summary['heldout_items']} "
        f"{plan.task} test clips (fixed masks) and frozen-probe scores of the "
        f"{plan.encoder} encoder.\n\n{table}\n"
    )
    plot_records(records, out / "track.png", f"{run_dir.name}: checkpoints over training")
    print(table, flush=True)
    print(f"track: wrote {out / 'track.json'}, {out / 'track.md'}, {out / 'track.png'}", flush=True)
    return summary


def run_labels(paths: Sequence[Path], summaries: Sequence[dict]) -> list[str]:
    """A legend name per run: a saved file's own name (``track.json`` files are named by their run), else the
    shortest tail of the run folder that tells the runs apart (``mjepa ablate`` folders all end in ``pretrain``)."""
    names = [p.stem if p.suffix == ".json" and p.stem != "track" else None for p in paths]
    folders = [Path(s["run_dir"]).parts for s in summaries]
    for depth in range(1, max(map(len, folders), default=1) + 1):
        tails = ["/".join(parts[-depth:]) for parts in folders]
        if len(set(tails)) == len(tails):
            break
    return [name or tail for name, tail in zip(names, tails)]


def plot_comparison(summaries: list[dict], path: Path, labels: Sequence[str]) -> None:
    """The runs on shared axes: held-out intra-modal terms, held-out effective rank of the pooled targets and mean
    probe scores (at the steps that have them); one line style per run, one colour per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = ("-", "--", ":", "-.")
    colours = {
        "A": "tab:blue",
        "V": "tab:orange",
        "AV": "tab:green",
        "audio": "tab:blue",
        "video": "tab:orange",
        "av": "tab:green",
    }
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(18, 5))
    for index, (summary, name) in enumerate(zip(summaries, labels)):
        style = styles[index % len(styles)]
        records = summary["records"]
        steps = [r["step"] for r in records]
        for mode in ("A", "V", "AV"):
            if f"intra_{mode}" in records[0]["heldout_losses"]:
                left.plot(
                    steps,
                    [r["heldout_losses"][f"intra_{mode}"] for r in records],
                    style,
                    marker="o",
                    color=colours[mode],
                    label=f"{name}: intra_{mode}",
                )
            if f"effective_rank_{mode}" in records[0]["heldout_collapse"]:
                middle.plot(
                    steps,
                    [r["heldout_collapse"][f"effective_rank_{mode}"] for r in records],
                    style,
                    marker="o",
                    color=colours[mode],
                    label=f"{name}: rank {mode}",
                )
        for modality in MODALITIES:
            probed = [r for r in records if modality in r["probe_scores"]]
            if probed:
                right.plot(
                    [r["step"] for r in probed],
                    [100 * r["probe_scores"][modality]["mean"] for r in probed],
                    style,
                    marker="o",
                    color=colours[modality],
                    label=f"{name}: {modality}",
                )
    left.set_title("held-out intra-modal loss (fixed clips and masks, log scale)")
    left.set_yscale("log")
    middle.set_title("effective rank of pooled targets (held-out clips)")
    right.set_title(f"frozen attentive probe ({summaries[0]['records'][0]['probe_metric']}, %, mean over seeds)")
    probed = any(r["probe_scores"] for summary in summaries for r in summary["records"])
    if not probed:
        no_probes_panel(right)
    for ax in (left, middle, right) if probed else (left, middle):
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_track_json(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable track.json ({err})") from None
    if not isinstance(summary, dict) or not summary.get("records") or "run_dir" not in summary:
        raise ValueError(f"{path}: not a track.json written by mjepa track (no run_dir / records)")
    return summary


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.run_dirs]
    saved = {p: read_track_json(p) for p in paths if p.suffix == ".json"}
    run_dirs = [p for p in paths if p not in saved]
    if saved and not args.compare_out:
        raise ValueError(f"{next(iter(saved))}: a saved track.json is only drawn; add --compare-out PNG")
    if args.out and len(run_dirs) > 1:
        raise ValueError("--out names one run's output folder; with several runs each writes RUN_DIR/track")
    if args.compare_out and len(paths) < 2:
        raise ValueError("--compare-out needs at least two runs (folders or track.json files)")
    plan = TrackPlan.from_args(args)
    for run_dir in run_dirs:  # fail on a missing checkpoint before hours of scoring, not after
        steps = {step for step, _ in select_checkpoints(run_dir, plan.steps)} | ({0} if plan.include_init else set())
        unscored = sorted((plan.probe_steps or set()) - steps)
        if unscored:
            raise ValueError(
                f"--probe-steps: step {unscored[0]} is not among the scored steps of {run_dir} "
                f"({', '.join(map(str, sorted(steps)))})"
            )
    folds = task_folds(TASKS[args.task], args) if run_dirs else []
    device = resolve_device()
    folder = "track" if plan.encoder == "target" else f"track-{plan.encoder}"
    scored = {
        run_dir: track_run(run_dir, Path(args.out) if args.out else run_dir / folder, plan, folds, device)
        for run_dir in run_dirs
    }
    summaries = [saved[p] if p in saved else scored[p] for p in paths]  # in the order given
    if args.compare_out:
        plot_comparison(summaries, Path(args.compare_out), run_labels(paths, summaries))
        print(f"track: wrote {args.compare_out}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa track", run, build_parser().parse_args(argv))
