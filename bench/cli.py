"""`python -m bench ...`: list, run, export, site, score, train.

The parser, the dispatch and the small commands; `list` and `run` are in `bench.cli_list`
and `bench.cli_run`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli_list import cmd_list, describe, describe_dataset, weights_status  # noqa: F401 - still bench.cli.describe, ...
from bench.cli_run import cmd_run
from bench.errors import BenchError

KINDS = ("models", "attacks", "defenses", "datasets", "matrices")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Adversarial robustness benchmark for IQA models.")
    sub = p.add_subparsers(dest="command", required=True)

    def plugin_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--plugin", action="append", default=[], metavar="FILE", help="load a plugin file (repeatable)")

    def data_root_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-root", action="append", default=[], metavar="NAME=PATH",
                        help="folder holding dataset NAME (repeatable); overrides $BENCH_DATA_<NAME> and "
                             "bench-data.toml")

    sp = sub.add_parser("list", help="list registered components")
    sp.add_argument("kind", choices=KINDS)
    sp.add_argument("--params", action="store_true",
                    help="under each component, its parameters: name, type, default, what is allowed, help")
    data_root_arg(sp)
    plugin_arg(sp)

    sp = sub.add_parser("run", help="compute every cell of a matrix, then render the site")
    sp.add_argument("--matrix", required=True, help="built-in name (quick, full) or path of a TOML file")
    data_root_arg(sp)
    sp.add_argument("--results", default="results", help="results directory (default: results/)")
    sp.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    sp.add_argument("--backend", choices=("local", "dask"), default="local",
                    help="local: this machine (--jobs processes); dask: an existing Dask cluster (--scheduler)")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    sp.add_argument("--no-reuse", action="store_true",
                    help="share nothing between cells (no cached fitted defenses); for measuring, see `bench perf`")
    sp.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda where present)")
    sp.add_argument("--no-site", action="store_true", help="do not render the site afterwards")
    sp.add_argument("--site-out", default="site", help="where to render the site (default: site/)")
    sp.add_argument("--no-progress", action="store_true")
    sp.add_argument("--cell-timeout", type=float, default=3600.0, metavar="SECONDS",
                    help="per-cell time limit; a cell past it fails alone (default 3600; 0: none)")
    sp.add_argument("--max-memory-gb", type=float, default=None, metavar="GB",
                    help="resident-memory limit of each process running cells; a cell past it fails alone "
                         "(default: 80%% of this machine's memory divided by --jobs; 0: none)")
    sp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long for another run on the same --results folder to finish (default: refuse)")
    sp.add_argument("--skip-missing", action="store_true",
                    help="record the cells of models whose weights files, and of datasets whose roots, are "
                         "missing here as skipped (with why; computed by a later run once present) and run "
                         "the rest, instead of stopping")
    plugin_arg(sp)

    sp = sub.add_parser("export", help="export the results store")
    sp.add_argument("--results", default="results")
    sp.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    sp.add_argument("--out", help="file to write (default: stdout; required for parquet)")
    sp.add_argument("--table", choices=("cells", "profile", "profile-pooled", "gradients"), default="cells",
                    help="cells: one row per cell (default); profile: per cell, layer and perturbation, the "
                         "amplification (median, 95%% interval over images) and the layer's operator norm; "
                         "profile-pooled: the same pooled over each group's cells and seeds; gradients: per "
                         "group, the clean images' input-gradient norms")

    sp = sub.add_parser("site", help="render the static leaderboard from a results store")
    sp.add_argument("--results", default="results")
    sp.add_argument("--out", default="site")
    sp.add_argument("--readme", metavar="FILE",
                    help="also rewrite the claim section between <!-- claim:start/end --> in FILE")
    sp.add_argument("--readme-section", metavar="NAME", default="claim",
                    help="the markers' name: <!-- NAME:start/end --> (default claim), so that one README holds "
                         "the claim of several stores, each regenerated from its own")

    sp = sub.add_parser("score", help="score image files with a model: one line path,score each")
    sp.add_argument("--model", required=True)
    sp.add_argument("--weights", help="local checkpoint for a learned model")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--dataset", default="embedded",
                    help="for a model trained here: the dataset it was trained on (default embedded)")
    sp.add_argument("files", nargs="+", metavar="PATH",
                    help="image files, or folders: a folder's image files are scored in name order, its "
                         "sub-folders are not searched; exit status 1 if any path could not be scored")
    data_root_arg(sp)
    plugin_arg(sp)

    sp = sub.add_parser("train", help="train a learned model on a dataset's train split")
    sp.add_argument("--model", required=True)
    sp.add_argument("--dataset", default="embedded")
    sp.add_argument("--seed", type=int, default=0)
    data_root_arg(sp)
    sp.add_argument("--device", default="cpu")
    plugin_arg(sp)

    sp = sub.add_parser("weights", help="download (online) or list (offline) every published file a matrix's "
                        "models read, with sizes")
    sp.add_argument("--matrix", required=True, help="built-in name (quick, full, paper) or path of a TOML file")
    sp.add_argument("--list", action="store_true", help="only list them, download nothing")
    plugin_arg(sp)

    sp = sub.add_parser("perf", help="measure the benchmark's speed here; last line is one JSON object")
    sp.add_argument("--results", default="results", help="store whose runs.jsonl may hold a complete cold full run")
    sp.add_argument("--workdir", help="scratch folder (default: a new temporary one)")
    sp.add_argument("--skip-full", action="store_true",
                    help="do not project the full matrix's time when no complete full run is on record")
    return p


def main(argv: list[str] | None = None) -> int:
    from bench.tuning import tune_process

    tune_process()
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "data_root", None):
            from bench.api import DATASETS
            from bench.datasets.roots import apply_cli_roots
            from bench.plugins import load_plugins

            load_plugins(args.plugin)
            for name in apply_cli_roots(args.data_root):  # into the environment: workers inherit it
                DATASETS.get(name)  # a misspelt name is an error, not a root nobody reads
        return {"list": cmd_list, "run": cmd_run, "export": cmd_export, "site": cmd_site,
                "score": cmd_score, "train": cmd_train, "perf": cmd_perf,
                "weights": cmd_weights}[args.command](args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are saved; run the same command again to resume", file=sys.stderr)
        return 130


def cmd_export(args: argparse.Namespace) -> int:
    from bench.store import ResultsStore, records_frame

    store = ResultsStore(args.results)
    if not store.cells.is_dir():
        raise BenchError(f"no results store at '{args.results}' (expected {store.cells}/); run `bench run` first")
    records = list(store.records())
    if args.table == "cells":
        df = records_frame(records)
    else:
        from bench import profile_store

        df = {"profile": lambda: profile_store.profile_frame(store.root, records),
              "profile-pooled": lambda: profile_store.pooled_frame(store.root, records),
              "gradients": lambda: profile_store.gradient_frame(store.root)}[args.table]()
    if args.format == "parquet":
        if not args.out:
            raise BenchError("--format parquet writes binary: give --out FILE")
        df.to_parquet(args.out, index=False)
        return 0
    text = df.to_csv(index=False) if args.format == "csv" else df.to_json(orient="records", indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from bench.leaderboard import render_site

    print(render_site(args.results, args.out))
    if args.readme:
        from bench.leaderboard.claim import rewrite_readme
        from bench.leaderboard.render import readme_claim

        try:
            rewrite_readme(args.readme, readme_claim(args.results), args.readme_section)
        except (OSError, ValueError) as e:
            raise BenchError(f"cannot rewrite the claim section of '{args.readme}': {e}") from None
        print(f"claim section '{args.readme_section}' rewritten in {args.readme}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from bench.api import DATASETS, MODELS
    from bench.matrix import Spec
    from bench.plugins import load_plugins
    from bench.registry import check_params
    from bench.score import expand, score_files
    from bench.workbench import Workbench

    load_plugins(args.plugin)
    cls = MODELS.get(args.model)
    params = {"weights": args.weights} if args.weights else {}
    spec = Spec("model", args.model, check_params("model", args.model, cls, params), cls.info.version)
    dcls = DATASETS.get(args.dataset)
    trained_on = Spec("dataset", args.dataset, dict(dcls.defaults), dcls.info.version)
    files, problems = expand(args.files)
    if files:  # no model to load when nothing can be scored
        model, _ = Workbench(seed=0, device=args.device, allow_train=False).base_model(spec, trained_on)
        problems += score_files(model, files, args.device)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.api import DATASETS, MODELS, IQAModel
    from bench.matrix import Spec
    from bench.plugins import load_plugins
    from bench.workbench import Workbench

    load_plugins(args.plugin)
    mcls, dcls = MODELS.get(args.model), DATASETS.get(args.dataset)
    if mcls.info.kind != "learned":
        raise BenchError(f"model '{args.model}' is classic: it has nothing to train")
    if mcls.fit is IQAModel.fit:
        raise BenchError(f"model '{args.model}' cannot be trained here (it does not implement fit): give its "
                         "weights with --weights PATH to `bench score`, or a `weights` field in a matrix")
    bench = Workbench(seed=args.seed, device=args.device, log=lambda m: print(m, file=sys.stderr))
    _, source = bench.base_model(Spec("model", args.model, dict(mcls.defaults), mcls.info.version),
                                 Spec("dataset", args.dataset, dict(dcls.defaults), dcls.info.version))
    print({k: v for k, v in source.items() if k != "params"})
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """One line per file: model, file, size, where it is (or why it is not); exit 1 when a
    file is still missing, so that provisioning scripts stop there."""
    from bench import weightcheck
    from bench.matrix import load_matrix
    from bench.plugins import load_plugins

    load_plugins(args.plugin)
    files = weightcheck.needed(load_matrix(args.matrix))
    missing = {} if args.list else weightcheck.fetch(files)
    for row in weightcheck.table(files):
        size = f"{row['bytes'] / 1e6:9.1f} MB" if row["bytes"] is not None else "     size ?"
        where = row["path"] if row["present"] else f"MISSING: {missing.get(row['path'], 'not downloaded (--list)')}; " \
                                                     f"published at {row['url']}, belongs at {row['path']}"
        print(f"{row['model']:22s} {row['file']:40s} {size}  {where}")
    if not files:
        print("the matrix's models read no published files")
    return 1 if any(not r["present"] for r in weightcheck.table(files)) else 0


def cmd_perf(args: argparse.Namespace) -> int:
    import json

    from bench.perf import perf

    figures = perf(Path(args.results), Path(args.workdir) if args.workdir else None, args.skip_full,
                   log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(figures))
    return 0
