"""The ``mjepa`` command."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from mjepa.version import __version__

    parser = argparse.ArgumentParser(prog="mjepa", description="MJEPA audio-visual self-supervised learning")
    parser.add_argument("--version", action="version", version=f"mjepa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser(
        "pretrain",
        help="pretrain an MJEPA model (a preset or YAML config plus key=value overrides)",
        description="Pretrain MJEPA with the 9-term objective. The configuration is a preset name or a YAML file, "
        "then key=value overrides with dotted keys, e.g. optim.peak_lr=1e-3 run.steps=200 "
        "model.objective.cross_modal=av. Re-running with the same run.out_dir resumes from its latest checkpoint. "
        "Launch with torchrun (or srun) for several processes.",
    )
    pre.add_argument(
        "--config",
        default="tiny-cpu",
        help="preset (tiny-cpu, mjepa-tiny-atari, mjepa-tiny-stage1, mjepa-tiny, vitl16-as2m, vitg16-as2m-vm2m, "
        "vitg16-as2m-vm2m-cooldown64) or YAML file (default: tiny-cpu)",
    )
    pre.add_argument("--print-config", action="store_true", help="print the merged configuration and exit")
    pre.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides")

    sub.add_parser("plot", help="draw a run's training curves as a PNG", add_help=False)
    sub.add_parser(
        "probe", help="frozen-encoder probe of a checkpoint on a task (with a random-init baseline)", add_help=False
    )
    sub.add_parser("retrieve", help="A->V and V->A retrieval recall of a checkpoint", add_help=False)
    sub.add_parser("extract", help="embeddings for every item of a manifest", add_help=False)
    sub.add_parser(
        "demo",
        help="generate AtariAV, pretrain, probe A/V/AV of the shipped model, the new one and a "
        "random encoder, retrieve, report",
        add_help=False,
    )
    sub.add_parser(
        "track", help="every checkpoint of a run: held-out loss per term and probe scores over steps", add_help=False
    )
    sub.add_parser(
        "transfer",
        help="a model's audio embeddings on GM-Instruments (real recorded instruments) vs "
        "random init and a log-mel baseline, linear probe",
        add_help=False,
    )
    sub.add_parser(
        "suite",
        help="a model's audio features on the open-audio tasks (real speech and game sounds, split by voice, "
        "language or faction) vs random init and log-mel statistics, linear and attentive probes",
        add_help=False,
    )
    sub.add_parser(
        "ablate",
        help="the central ablation on AtariAV: four settings x seeds, probed A/V/AV, table + plot",
        add_help=False,
    )
    data = sub.add_parser(
        "data",
        help="data tools: import, validate and shard manifests, fbank statistics, AtariAV, DoomAV and open-audio data",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True)
    # The tools parse their own arguments; these entries only make them show up in --help.
    data_sub.add_parser("import", help="dataset metadata (AudioSet, ESC-50, FSD50K, ...) to a manifest", add_help=False)
    data_sub.add_parser("validate", help="scan every file of a manifest and report the bad ones", add_help=False)
    data_sub.add_parser("stats", help="fbank mean / std over a manifest", add_help=False)
    data_sub.add_parser("atari", help="generate the built-in AtariAV dataset", add_help=False)
    data_sub.add_parser(
        "doom-av", help="generate DoomAV: first-person ViZDoom clips with the game's sound", add_help=False
    )
    data_sub.add_parser("instruments", help="render the GM-Instruments transfer set from a SoundFont", add_help=False)
    data_sub.add_parser(
        "open-audio",
        help="real recorded speech and sound effects from Debian packages: manifests and probing tasks",
        add_help=False,
    )
    data_sub.add_parser(
        "shard", help="pack a manifest into WebDataset tar shards for training and evaluation", add_help=False
    )
    return parser


# Commands that parse their own arguments (their module has main(argv) and build_parser()).
TOOLS = {
    "plot": "mjepa.train.plot",
    "probe": "mjepa.eval.probe_command",
    "retrieve": "mjepa.eval.retrieve_command",
    "extract": "mjepa.extract",
    "demo": "mjepa.experiments.demo",
    "ablate": "mjepa.experiments.ablation",
    "track": "mjepa.experiments.track",
    "transfer": "mjepa.experiments.transfer",
    "suite": "mjepa.experiments.audio_suite",
}
DATA_TOOLS = {
    "import": "mjepa.data.manifests.import_command",
    "validate": "mjepa.data.manifests.validate",
    "stats": "mjepa.data.manifests.stats",
    "atari": "mjepa.data.atari.command",
    "shard": "mjepa.data.shards.command",
    "instruments": "mjepa.data.instruments.command",
    "doom-av": "mjepa.data.vizdoom.command",
    "open-audio": "mjepa.data.open_audio.command",
}


def _run_data_tool(argv: list[str]) -> int:
    if argv and argv[0] in DATA_TOOLS:
        import importlib

        return importlib.import_module(DATA_TOOLS[argv[0]]).main(argv[1:])
    build_parser().parse_args(["data", *argv])  # prints usage and exits for a missing or unknown tool
    return 2


def _pretrain(args: argparse.Namespace) -> int:
    import yaml

    from mjepa.pretrain_config import load_pretrain_config
    from mjepa.typed_config import to_dict

    config = load_pretrain_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
    from mjepa.train.loop import pretrain

    result = pretrain(config)
    if result.preempted:
        print(
            f"mjepa pretrain: stopped by {result.preempted} after step {result.last_step}; checkpoint written, "
            f"run the same command to resume",
            flush=True,
        )
    return 0


def robust_output() -> None:
    """Printing a name with odd characters (an undecodable file name) escapes them instead of failing the command
    after its work is done."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    robust_output()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"]:
        return _run_data_tool(argv[1:])
    if argv[:1] and argv[0] in TOOLS:
        import importlib

        return importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "pretrain":
        from mjepa.commands import run_reporting_errors
        from mjepa.train.loop import TrainingStopped

        return run_reporting_errors("mjepa pretrain", _pretrain, args, stops=(TrainingStopped,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
