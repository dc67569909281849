"""``mjepa ablate``: the paper's central ablation table on built-in AtariAV.

Four settings are pretrained with identical data, schedule, step budget and seeds:

1. ``separate``      -- separate unimodal encoders (audio and video), intra-modal terms only;
2. ``shared-intra``  -- one shared encoder, intra-modal terms only;
3. ``shared-cross``  -- one shared encoder, + A<->V cross-modal prediction;
4. ``full``          -- + the joint AV mode: all 9 terms (the MJEPA recipe).

Every model is probed (frozen attentive probe) with audio, video and audio-visual input (separate encoders have no
AV input), beside a random-init encoder of the ``full`` architecture (the ``random-init`` setting, which needs that
run's checkpoint for its config and input statistics). The table holds mean +- std over seeds. The probed
encoder is the EMA target by default; ``--encoders target,context`` also probes the online context encoder, which
short runs leave ahead of their target (docs/results.md section 2e).

Each (setting, seed) writes ``runs/<setting>/seed<k>/probe.json`` (``probe-context.json`` for the context encoder)
when done; re-running the command skips finished runs and resumes unfinished pretraining from its latest checkpoint,
so several processes can share one ``--out`` with disjoint ``--seeds`` and a last call with ``--report-only`` writes
the table. A record carries its run's resolved config, so the records alone (a few KB each, unlike the checkpoints)
rebuild the table, and a record made under other flags is refused instead of being reused. The table's JSON takes
the recipe from the records, not from the call's flags, and refuses a folder whose records hold two recipes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mjepa.commands import comma_choices, comma_integers, resolve_device, run_reporting_errors
from mjepa.data.atari.generate import DEFAULT_GAMES, generate_atari_av
from mjepa.eval.loading import load_model
from mjepa.eval.probe import ATARI_PROBE_HEADS, ProbeSettings
from mjepa.eval.run_probe import FeatureSettings, evaluate
from mjepa.eval.seed_spread import SeedSpread
from mjepa.eval.tasks import TASKS, atari_splits
from mjepa.models.mjepa import ENCODER_CHOICES
from mjepa.pretrain_config import PretrainConfig, load_pretrain_config
from mjepa.terms import MODALITIES
from mjepa.train.loop import pretrain
from mjepa.train.resume_config import (
    CHANGEABLE_ON_RESUME,
    config_changes,
    flatten,
    join_changes,
    resume_changes,
)
from mjepa.typed_config import to_dict

RANDOM_INIT = "random-init"


@dataclass(frozen=True)
class AblationSetting:
    name: str
    label: str  # the row label of the paper's ablation table
    overrides: tuple[str, ...]

    @property
    def modalities(self) -> tuple[str, ...]:
        # Separate unimodal encoders have no audio-visual input (the paper's "-").
        return ("audio", "video") if "model.objective.shared_encoder=false" in self.overrides else MODALITIES


SETTINGS = (
    AblationSetting(
        "separate",
        "separate unimodal encoders",
        ("model.objective.shared_encoder=false", "model.objective.cross_modal=none", "model.objective.joint_av=false"),
    ),
    AblationSetting(
        "shared-intra",
        "shared encoder, intra-modal terms only",
        ("model.objective.shared_encoder=true", "model.objective.cross_modal=none", "model.objective.joint_av=false"),
    ),
    AblationSetting(
        "shared-cross",
        "+ A<->V cross-modal prediction",
        ("model.objective.shared_encoder=true", "model.objective.cross_modal=av", "model.objective.joint_av=false"),
    ),
    AblationSetting(
        "full",
        "+ joint AV mode, all 9 terms",
        ("model.objective.shared_encoder=true", "model.objective.cross_modal=all", "model.objective.joint_av=true"),
    ),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
SETTING_NAMES = (*SETTINGS_BY_NAME, RANDOM_INIT)
# The keys a setting or a seed sets; every other key of the resolved config is the recipe, shared by all records.
PER_RUN_KEYS = frozenset(
    {"model.objective.shared_encoder", "model.objective.cross_modal", "model.objective.joint_av", "run.seed"}
)


@dataclass(frozen=True)
class AblationPlan:
    """What one ``mjepa ablate`` call runs, checked and parsed once from its command line."""

    out: Path
    config: str
    steps: int
    seeds: tuple[int, ...]
    settings: tuple[AblationSetting, ...]
    with_random_init: bool
    atari_dir: str
    games: tuple[str, ...]
    clips_per_game: int
    probe_epochs: int
    encoders: tuple[str, ...]
    workers: int
    overrides: tuple[str, ...]
    report_only: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AblationPlan:
        settings, with_random_init = parse_names(args.settings)
        # Unlike `track --modalities ''` (held-out losses only), an ablation that probes no encoder has nothing to
        # report.
        encoders = comma_choices(args.encoders, "--encoders", "encoder", list(ENCODER_CHOICES))
        if not encoders:
            raise ValueError(
                f"--encoders: no encoder in {args.encoders!r}; expected some of {', '.join(ENCODER_CHOICES)}"
            )
        return cls(
            Path(args.out),
            args.config,
            args.steps,
            tuple(comma_integers(args.seeds, "--seeds")),
            tuple(settings),
            with_random_init,
            args.atari_dir,
            tuple(g for g in args.games.split(",") if g),
            args.clips_per_game,
            args.probe_epochs,
            tuple(encoders),
            args.workers,
            tuple(args.overrides),
            args.report_only,
        )


def run_overrides(plan: AblationPlan, setting: AblationSetting, seed: int) -> list[str]:
    """The pretraining config of one (setting, seed): the schedule and data are the same for every setting."""
    steps = plan.steps
    return [
        f"run.out_dir={run_dir(plan.out, setting.name, seed) / 'pretrain'}",
        f"data.atari_dir={plan.atari_dir}",
        f"data.atari_games=[{','.join(plan.games)}]",
        f"data.atari_clips_per_game={plan.clips_per_game}",
        f"run.steps={steps}",
        f"optim.warmup_steps={max(1, steps // 10)}",
        f"optim.cooldown_steps={max(0, steps // 4)}",
        f"run.checkpoint_every={max(1, steps // 4)}",
        "run.keep_checkpoints=1",
        f"run.seed={seed}",
        *plan.overrides,
        *setting.overrides,
    ]


def run_dir(out: str | Path, name: str, seed: int) -> Path:
    return Path(out) / "runs" / name / f"seed{seed}"


def probe_settings(plan: AblationPlan, seed: int) -> ProbeSettings:
    return ProbeSettings(
        protocol="attentive",
        learning_rates=(1e-3,),
        weight_decays=(0.05,),
        epochs=plan.probe_epochs,
        batch_size=32,
        num_heads=ATARI_PROBE_HEADS,
        seed=seed,
    )


def result_file(folder: Path, encoder: str) -> Path:
    # The target, the encoder the paper probes, keeps the plain name.
    return folder / ("probe.json" if encoder == "target" else f"probe-{encoder}.json")


def probe_checkpoint(
    checkpoint: Path,
    random_init: bool,
    modalities: Sequence[str],
    plan: AblationPlan,
    seed: int,
    encoder: str = "target",
) -> dict[str, float]:
    loaded = load_model(checkpoint, random_init=random_init)
    device = resolve_device()
    folds = [atari_splits(plan.atari_dir)]
    scores = {}
    for modality in modalities:
        features = FeatureSettings(modality, -1, encoder, 16, plan.workers, plan.out / "features", device)
        result = evaluate(
            loaded,
            RANDOM_INIT if random_init else "trained",
            TASKS["atari"],
            folds,
            probe_settings(plan, seed),
            features,
        )
        scores[modality] = result.score
    return scores


def final_losses(pretrain_dir: Path, last: int = 10) -> dict[str, float]:
    """Mean of each loss term over the last ``last`` logged steps."""
    records = [json.loads(line) for line in (pretrain_dir / "metrics.jsonl").read_text().splitlines() if line]
    records = [r for r in records if "loss" in r][-last:]
    keys = sorted({k for r in records for k in r if k == "loss" or k.startswith(("intra_", "cross_"))})
    return {k: statistics.fmean(r[k] for r in records if k in r) for k in keys}


def check_finished(
    path: Path, record: dict, config: PretrainConfig, plan: AblationPlan, random_init: bool = False
) -> None:
    """Refuse a finished record that this command would not have produced: reusing it would put a run of another
    recipe (steps, learning rate, mask, probe epochs...) in this table under this command's name. A random-init
    record depends only on the architecture and the seed. Records from before ``pretrain_config`` was saved are
    checked on their step budget only."""
    changes = []
    if "pretrain_config" in record:
        changes = resume_changes(record["pretrain_config"], config, only=("model.", "run.seed") if random_init else ())
    elif not random_init and record.get("steps") != plan.steps:
        changes = [f"run.steps: {record.get('steps')!r} -> {plan.steps!r}"]
    if record["probe_epochs"] != plan.probe_epochs:
        changes.append(f"--probe-epochs: {record['probe_epochs']!r} -> {plan.probe_epochs!r}")
    if changes:
        raise ValueError(
            f"{path}: finished with a config this command does not build ({join_changes(changes)}); "
            "run the command that made it, or use a new --out"
        )


def run_setting(plan: AblationPlan, setting: AblationSetting, seed: int) -> list[dict]:
    folder = run_dir(plan.out, setting.name, seed)
    config = load_pretrain_config(plan.config, run_overrides(plan, setting, seed))
    finished = {}
    for encoder in plan.encoders:
        path = result_file(folder, encoder)
        if path.exists():
            finished[encoder] = json.loads(path.read_text())
            check_finished(path, finished[encoder], config, plan)
    missing = [e for e in plan.encoders if e not in finished]
    if not missing:
        print(f"ablate: {setting.name} seed {seed}: done already", flush=True)
        return [finished[e] for e in plan.encoders]
    started = time.perf_counter()
    print(f"ablate: pretraining {setting.name} seed {seed} ({plan.steps} steps)", flush=True)
    pretrain(config)  # returns at once when the run's last checkpoint is already there
    pretrain_seconds = time.perf_counter() - started
    checkpoint = folder / "pretrain" / "checkpoints" / "latest.pt"
    losses = final_losses(folder / "pretrain")  # once: the same run serves every probed encoder
    records = []
    for encoder in missing:
        mark = time.perf_counter()
        scores = probe_checkpoint(checkpoint, False, setting.modalities, plan, seed, encoder)
        # The resolved config makes a record self-describing once its run folder is gone (check_finished).
        record = {
            "setting": setting.name,
            "label": setting.label,
            "seed": seed,
            "steps": plan.steps,
            "encoder": encoder,
            "scores": scores,
            "final_losses": losses,
            "probe_epochs": plan.probe_epochs,
            "pretrain_config": to_dict(config),
            "seconds": {"pretrain": pretrain_seconds, "probe": time.perf_counter() - mark},
        }
        result_file(folder, encoder).write_text(json.dumps(record, indent=2))
        print(
            f"ablate: {setting.name} seed {seed} ({encoder} encoder): "
            + ", ".join(f"{m} {100 * s:.1f}" for m, s in scores.items()),
            flush=True,
        )
        records.append(record)
    return records


def run_random_init(plan: AblationPlan, seed: int) -> dict:
    """The random-init row: the ``full`` architecture, freshly initialised with the run's seed."""
    folder = run_dir(plan.out, RANDOM_INIT, seed)
    result_path = folder / "probe.json"
    config = load_pretrain_config(plan.config, run_overrides(plan, SETTINGS_BY_NAME["full"], seed))
    if result_path.exists():
        record = json.loads(result_path.read_text())
        check_finished(result_path, record, config, plan, random_init=True)
        return record
    checkpoint = run_dir(plan.out, "full", seed) / "pretrain" / "checkpoints" / "latest.pt"
    if not checkpoint.is_file():  # its config and frontend fix the architecture and the input statistics
        raise ValueError(
            f"{RANDOM_INIT} seed {seed}: needs the full setting's checkpoint {checkpoint}; "
            f"run --settings full,{RANDOM_INIT} for this seed"
        )
    scores = probe_checkpoint(checkpoint, True, MODALITIES, plan, seed)
    # At initialisation the EMA target is a copy of the context encoder, so one row serves both encoders.
    record = {
        "setting": RANDOM_INIT,
        "label": "random-init encoder",
        "seed": seed,
        "steps": 0,
        "encoder": "target",
        "scores": scores,
        "probe_epochs": plan.probe_epochs,
        "pretrain_config": to_dict(config),
    }
    folder.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(record, indent=2))
    return record


def collect(out: str | Path) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(Path(out).glob("runs/*/seed*/probe*.json"))}


def common_recipe(records: dict[Path, dict]) -> dict:
    """The resolved config that every record with one shares, outside its setting's switches and its seed (and the
    folders and cadence, which do not change what is computed). Records of two recipes in one folder are refused:
    their table would compare runs that differ in more than the setting."""
    # Records written before records saved their config are left out (check_finished checked their steps).
    configured = {path: record["pretrain_config"] for path, record in records.items() if "pretrain_config" in record}
    if not configured:
        return {}
    reference, first = next(iter(configured.items()))
    for path, config in configured.items():
        changes = config_changes(first, config, ignore=PER_RUN_KEYS)
        if changes:
            raise ValueError(
                f"{path}: made with another recipe than {reference} ({join_changes(changes)}); "
                "keep each recipe's runs under their own --out"
            )
    return {k: v for k, v in flatten(first).items() if k not in CHANGEABLE_ON_RESUME and k not in PER_RUN_KEYS}


def probe_epochs_of(records: dict[Path, dict]) -> int:
    epochs = {r["probe_epochs"]: p for p, r in records.items()}
    if len(epochs) > 1:
        (first, a), (second, b) = sorted(epochs.items())[:2]
        raise ValueError(f"{b}: probed for {second} epochs, {a} for {first}; keep each probe's runs apart")
    return next(iter(epochs))


def summarise(records: list[dict]) -> list[dict]:
    """One row per (setting, probed encoder), in table order: mean and sample std over seeds of each modality's
    probe score. Records without an ``encoder`` field predate --encoders and probed the target."""
    order = [(s.name, e) for s in SETTINGS for e in ENCODER_CHOICES] + [(RANDOM_INIT, "target")]
    rows = []
    for name, encoder in order:
        mine = [r for r in records if r["setting"] == name and r.get("encoder", "target") == encoder]
        if not mine:
            continue
        label = mine[0]["label"] + ("" if encoder == "target" else f" ({encoder} encoder)")
        row = {
            "setting": name,
            "encoder": encoder,
            "label": label,
            "seeds": sorted(r["seed"] for r in mine),
            "scores": {},
        }
        for modality in MODALITIES:
            values = [r["scores"][modality] for r in mine if modality in r["scores"]]
            if values:  # the spread here is over pretraining seeds
                row["scores"][modality] = SeedSpread(tuple(values)).to_dict()
        rows.append(row)
    return rows


def table_markdown(rows: list[dict]) -> str:
    lines = ["| setting | A | V | AV | seeds |", "|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for modality in MODALITIES:
            score = row["scores"].get(modality)
            if not score:
                cells.append("–")
            elif len(score["values"]) == 1:  # one seed has no spread to show; "± 0.0" would claim one
                cells.append(f"{100 * score['mean']:.1f}")
            else:
                cells.append(f"{100 * score['mean']:.1f} ± {100 * score['std']:.1f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {len(row['seeds'])} |")
    return "\n".join(lines)


def plot_rows(rows: list[dict], path: Path) -> None:
    """One panel per probed encoder, the settings as bars in table order; the random-init row (the same weights
    for both encoders at initialisation) appears in every panel as the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encoders = list(dict.fromkeys(r["encoder"] for r in rows if r["setting"] != RANDOM_INIT)) or ["target"]
    reference = [r for r in rows if r["setting"] == RANDOM_INIT]
    names = [s.name for s in SETTINGS] + [RANDOM_INIT]
    colours = {name: f"C{i}" for i, name in enumerate(names)}
    labels = {r["setting"]: r["label"].replace(f" ({r['encoder']} encoder)", "") for r in rows}
    fig, axes = plt.subplots(1, len(encoders), figsize=(max(8, 6 * len(encoders)), 4.6), sharey=True, squeeze=False)
    lows = [100 * (s["mean"] - s["std"]) for r in rows for s in r["scores"].values()]
    for ax, encoder in zip(axes[0], encoders):
        panel = [r for r in rows if r["encoder"] == encoder and r["setting"] != RANDOM_INIT] + reference
        width = 0.8 / max(1, len(panel))
        for i, row in enumerate(panel):
            xs, means, stds = [], [], []
            for j, modality in enumerate(MODALITIES):
                if modality in row["scores"]:
                    xs.append(j - 0.4 + (i + 0.5) * width)
                    means.append(100 * row["scores"][modality]["mean"])
                    stds.append(100 * row["scores"][modality]["std"])
            ax.bar(xs, means, width, yerr=stds, capsize=3, color=colours[row["setting"]])
        ax.set_xticks(range(len(MODALITIES)), ["audio", "video", "audio-visual"])
        ax.set_title(f"{'EMA target' if encoder == 'target' else 'online context'} encoder")
        ax.set_ylim(max(0.0, min(lows) - 10) if lows else 0.0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("probe mAP (%)")
    shown = [n for n in names if n in labels]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[n]) for n in shown]
    columns = min(3 if len(encoders) > 1 else 2, len(shown))  # two columns fit under a single panel
    fig.legend(handles, [labels[n] for n in shown], loc="lower center", ncol=columns, fontsize=8)
    fig.suptitle("MJEPA ablation on AtariAV (mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(plan: AblationPlan) -> dict:
    out = plan.out
    by_path = collect(out)
    if not by_path:
        raise ValueError(f"no finished ablation runs under {out / 'runs'}")
    records = list(by_path.values())
    rows = summarise(records)
    # The recipe, steps, probe epochs and encoders as the finished runs record them, not as this call's flags say:
    # a --report-only call need not repeat the run's flags, and the table describes the runs it holds.
    steps = sorted({r["steps"] for r in records if r["setting"] != RANDOM_INIT})
    recipe = common_recipe(by_path)
    summary = {
        "task": "atari",
        "steps": steps[0] if len(steps) == 1 else steps,
        "recipe": recipe,
        "records_without_config": sum("pretrain_config" not in r for r in records),
        "probe": {
            "protocol": "attentive",
            "epochs": probe_epochs_of(by_path),
            "encoders": sorted({r["encoder"] for r in rows}),
        },
        "rows": rows,
        "runs": records,
    }
    (out / "ablation.json").write_text(json.dumps(summary, indent=2))
    table = table_markdown(rows)
    (out / "ablation.md").write_text(
        "Frozen attentive probe mAP (%) on AtariAV, mean ± std over seeds.\n\n" + table + "\n"
    )
    plot_rows(rows, out / "ablation.png")
    print(table, flush=True)
    print(f"ablate: wrote {out / 'ablation.json'}, {out / 'ablation.md'}, {out / 'ablation.png'}", flush=True)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa ablate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    parser.add_argument("--config", default="tiny-cpu", help="pretraining preset or YAML (default tiny-cpu)")
    parser.add_argument("--steps", type=int, default=150, help="pretraining steps per run (default 150)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument(
        "--settings",
        default=",".join(SETTING_NAMES),
        help=f"comma-separated subset of {', '.join(SETTING_NAMES)} (default: all); {RANDOM_INIT} "
        "probes the full setting's architecture, freshly initialised, and needs that run",
    )
    parser.add_argument("--atari-dir", default="data/atari", help="AtariAV cache folder (default data/atari)")
    parser.add_argument("--games", default=",".join(DEFAULT_GAMES), help="comma-separated Atari games")
    parser.add_argument("--clips-per-game", type=int, default=40)
    parser.add_argument("--probe-epochs", type=int, default=4)
    parser.add_argument(
        "--encoders",
        default="target",
        help="comma-separated encoders to probe: target (the EMA target, the default) and/or context",
    )
    parser.add_argument("--workers", type=int, default=1, help="feature-extraction loader workers (default 1)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pretraining override applied to every setting (repeatable), e.g. --set model.encoder.depth=6",
    )
    parser.add_argument("--report-only", action="store_true", help="only (re)write the table from finished runs")
    return parser


def parse_names(text: str) -> tuple[list[AblationSetting], bool]:
    """The pretrained settings named in ``text``, and whether it names the random-init row."""
    names = comma_choices(text, "--settings", "setting", list(SETTING_NAMES))
    return [SETTINGS_BY_NAME[n] for n in names if n != RANDOM_INIT], RANDOM_INIT in names


def run(args: argparse.Namespace) -> int:
    plan = AblationPlan.from_args(args)
    for setting in plan.settings:  # fail on a bad override before hours of training, not after
        load_pretrain_config(plan.config, run_overrides(plan, setting, plan.seeds[0] if plan.seeds else 0))
    if not plan.report_only:
        generate_atari_av(plan.atari_dir, games=plan.games, clips_per_game=plan.clips_per_game)
        for seed in plan.seeds:
            for setting in plan.settings:
                run_setting(plan, setting, seed)
            if plan.with_random_init:
                run_random_init(plan, seed)
    write_report(plan)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_reporting_errors("mjepa ablate", run, build_parser().parse_args(argv))
