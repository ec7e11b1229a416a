"""`bench list`: each registered component on one line, with where its code came from
and, with --params, its parameters; apart from `bench.cli`, which parses and dispatches.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_list(args: argparse.Namespace) -> int:
    if args.kind == "matrices":
        from bench.matrix import list_matrices, load_matrix
        from bench.plugins import load_plugins

        load_plugins(args.plugin)
        for name in list_matrices():
            m = load_matrix(name)
            print(f"{name:10s} {len(m.cells()):5d} cells  models={len(m.models)} defenses={len(m.defenses)} "
                  f"attacks={len(m.attacks)} datasets={len(m.datasets)}"
                  + (f" + blocks {', '.join(b.name for b in m.blocks)}" if m.blocks else ""))
        return 0
    from bench import api
    from bench.plugins import load_plugins

    load_plugins(args.plugin)
    registry = {"models": api.MODELS, "attacks": api.ATTACKS, "defenses": api.DEFENSES, "datasets": api.DATASETS}[args.kind]
    from bench.registry import origin_label

    for name, cls in registry:  # each with where its code came from: a number's producer must be traceable
        print(f"{describe(args.kind, cls)}  [from {origin_label(registry.origin_record(name))}]")
        if args.params:
            from bench.params import docs

            for doc in docs(cls) or []:
                print(f"    {doc.line()}")
    for src, why in sorted(registry.broken.items()):
        print(f"! {src}: failed to load: {why}")
    return 0


def describe(kind: str, cls: type) -> str:
    i = cls.info
    if kind == "models":
        if i.unavailable:
            return f"{i.name:20s} not run here: {i.unavailable}"
        grad = "differentiable" if i.differentiable else f"gradient via {i.gradient_surrogate or 'none'}"
        where = i.weights
        if i.kind == "learned":
            where += f" [{weights_status(cls)}]"
        lo, hi = i.score_range
        size = cls.size() if hasattr(cls, "size") else ""
        return (f"{i.name:20s} {'lower' if i.lower_better else 'higher'} is better, range [{lo:g}, {hi:g}], "
                f"{i.kind}, {grad}{size}; weights: {where}")
    if kind == "defenses":
        grad = "differentiable" if i.differentiable else f"BPDA via {i.surrogate}"
        needs = f"; needs weights you supply: {i.needs_weights}" if i.needs_weights else ""
        return (f"{i.name:16s} {i.kind:13s} {'randomized' if i.randomized else 'deterministic'}, {grad}; "
                f"{i.reference}{needs}")
    if kind == "attacks":
        return f"{i.name:10s} {i.norm}, eps in {i.budget_unit}; defaults {cls.defaults}; {i.reference}"
    return describe_dataset(cls)


def weights_status(cls: type) -> str:
    """Whether a learned model's weights are here, and if not where they must come from:
    `bench train` only for a model that can train (overrides IQAModel.fit); the others
    need a checkpoint, or their published file where the model looks for it."""
    from bench.api import IQAModel
    from bench.weights import cache_dir

    name = cls.info.name
    files = cls.published_files()
    if files:
        here = [f for f in files if f["present"]]
        size = sum(f["bytes"] for f in here) / 1e6
        if len(here) == len(files):
            return f"present: {len(files)} published file(s), {size:.0f} MB"
        gone = [f for f in files if not f["present"]]
        return (f"{len(here)} of {len(files)} published file(s) here; missing {', '.join(Path(f['path']).name for f in gone)}"
                f": `bench weights --matrix M` downloads them into {Path(gone[0]['path']).parent}")
    present = cls.pretrained_weights() or next(iter((cache_dir() / "models").glob(f"{name}-*.json")), None)
    if present:
        return f"present: {present}"
    if cls.fit is not IQAModel.fit:
        return f"not present: run `bench train --model {name}` or give --weights PATH"
    fix = "not present, and it cannot be trained here: give a checkpoint with --weights PATH (or `weights` in the matrix)"
    if cls.pretrained_weights.__func__ is not IQAModel.pretrained_weights.__func__:
        import torch

        fix += f", or put its published file in pyiqa's cache ({torch.hub.get_dir()}/pyiqa)"
    return fix


def describe_dataset(cls: type) -> str:
    """Name, NR/FR, image and reference counts, MOS scale and direction, then the layout
    expected and whether a root is configured: stat calls only, no file is read."""
    i = cls.info
    line = f"{i.name:12s} {i.mode}, {i.mos_name} in [{i.mos_range[0]:g}, {i.mos_range[1]:g}] " \
           f"({'lower' if i.mos_lower_better else 'higher'} is better)"
    if "images" in i.extra:
        line += f", {i.extra['images']} images, {i.extra.get('references', 0) or 'no'} references"
    status = getattr(cls, "root_status", None)
    if status is None:
        return f"{line}; {i.description}"
    return f"{line}; {status()}\n{'':13s}layout: {i.extra.get('layout', '?')}; published at {i.reference}"
