"""The data a matrix names, checked once before a run computes anything.

Without this check a dataset whose root is missing, or whose score file is broken, is
found by every cell that uses it: each writes an error record and the run ends with
exit status 1, a page of identical errors and a store full of failed cells. Checked here
instead, it is one line and exit status 2, and the results folder is left as it was.

The check is the loaders' own: it reads each file-based dataset's table (`FileDataset.
table`: root found, a known layout there, score file parsed, every score a number, every
listed image present in its folder's listing). It opens no image; decoding is still
checked per split, when a group first uses it. Datasets that are not read from a root
(the embedded default, plugins with their own `split`) have nothing to check here.
"""

from __future__ import annotations

import sys

from bench.datasets.roots import DataRootError
from bench.errors import BenchError, quoted
from bench.matrix import Matrix, Spec
from bench.store import digest


class DataCheckError(DataRootError):
    """A dataset the matrix needs cannot be read here; nothing was computed. `problem` is
    the message without that last clause (for a caller that goes on regardless)."""

    def __init__(self, problem: str, matrix: str) -> None:
        super().__init__(f"{problem}; nothing was computed (matrix {quoted(matrix)})")
        self.problem = problem


def matrix_datasets(matrix: Matrix) -> list[Spec]:
    """Each distinct dataset (name and parameters) of the top level and the blocks, in order."""
    seen: dict[str, Spec] = {}
    for spec in [*matrix.datasets, *(s for b in matrix.blocks for s in b.datasets)]:
        seen.setdefault(digest(spec.ident()), spec)
    return list(seen.values())


def dataset_problem(spec: Spec) -> str | None:
    """Why the dataset `spec` cannot be read here (the loader's one-line message, which
    names the dataset, the file and the fix), or None when it can, or when it is not a
    file-based dataset."""
    from bench.api import DATASETS
    from bench.datasets.files import FileDataset

    if spec.name not in DATASETS or not issubclass(DATASETS.get(spec.name), FileDataset):
        return None  # a failed plugin (its cells fail with its error) or data not read from a root
    try:
        DATASETS.create(spec.name, **spec.params).table()
    except BenchError as e:
        return str(e)
    return None


def check_data(matrix: Matrix) -> None:
    """Raise DataCheckError (exit status 2) with the first unreadable dataset's problem and
    the names of any others; return quietly when all can be read."""
    problems = [(spec, why) for spec in matrix_datasets(matrix) if (why := dataset_problem(spec)) is not None]
    if not problems:
        return
    more = ""
    if len(problems) > 1:
        more = f"; also unreadable: {', '.join(f'dataset {quoted(s.name)}' for s, _ in problems[1:])}"
    raise DataCheckError(f"{problems[0][1]}{more}", matrix.name)


def missing_inputs(matrix: Matrix) -> tuple[str | None, dict[str, str]]:
    """Fetch the published files the matrix's models read (online); return one message
    naming everything that cannot be had (each file with its address and folder, each
    `weights` file named but absent, each unreadable data root), or None, and the same per
    model or dataset name."""
    from bench import weightcheck

    files = weightcheck.needed(matrix)
    gone = weightcheck.fetch(files)
    per: dict[str, str] = {}
    for f in files:
        if f.path in gone:
            per.setdefault(f.model, f"{weightcheck.missing_message([f], gone)}")
    given = weightcheck.given_missing(matrix)
    for spec, line in given:
        per.setdefault(spec, line)
    problems = [p for p in [weightcheck.missing_message(files, gone)] if p] + [line for _, line in given]
    data = [(spec, why) for spec in matrix_datasets(matrix) if (why := dataset_problem(spec)) is not None]
    for spec, why in data:
        per.setdefault(spec.name, why)
    if data:
        more = "".join(f"; also unreadable: dataset {quoted(s.name)}" for s, _ in data[1:])
        problems.append(f"{'and ' if problems else ''}{data[0][1]}{more}")
    return ("; ".join(problems) or None), per


def check_before_run(matrix: Matrix, backend: str = "local", skip_missing: bool = False) -> dict[str, str]:
    """`bench run`'s check, before the lock is taken or any record written: raise
    DataCheckError (one line, exit status 2) naming everything missing. With
    `skip_missing`, return it per model or dataset name instead (their cells are recorded
    as skipped, with why). On a Dask cluster the workers may see data this machine does
    not, so there it is a warning on stderr and the run goes on."""
    problem, per = missing_inputs(matrix)
    if problem is None:
        return {}
    if skip_missing:
        print(f"warning: skipping the cells of {', '.join(sorted(per))}: {problem}", file=sys.stderr)
        return per
    if backend != "dask":
        raise DataCheckError(problem, matrix.name)
    print(f"warning: {problem} (on this machine; running anyway: the Dask workers may see other folders)",
          file=sys.stderr)
    return {}
