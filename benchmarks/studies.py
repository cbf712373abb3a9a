"""What the study scripts share: cells (a recipe config + overrides), restartable runs over lanes, scoring.

A cell runs once (teachers, base models) or once per seed, each run in its own folder under `runs`; a
finished run leaves `study_run.json` and is never run again, so a study can be stopped and restarted.
Overrides may name `{runs}` and `{seed}`; a cell that `needs` another (or a tuple of others) waits until
those (the same seed, if they are seeded) have finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Cell:
    name: str
    what: str
    recipe: str
    config: str
    overrides: list[str]
    needs: str | tuple[str, ...] | None = None
    seeded: bool = True


def run_dir(runs: str, cell: Cell, seed: int | None) -> str:
    return os.path.join(runs, cell.name if not cell.seeded else f"{cell.name}_s{seed}")


def command(runs: str, cell: Cell, seed: int | None) -> list[str]:
    overrides = [o.format(runs=runs, seed=seed) for o in cell.overrides]
    cmd = [sys.executable, os.path.join(REPO, "recipes", f"{cell.recipe}.py"),
           "--config", os.path.join(REPO, "recipes", "configs", cell.config), *overrides,
           "--output_dir", run_dir(runs, cell, seed), "--disable_tqdm", "true"]  # fmt: skip
    return cmd + (["--seed", str(seed)] if cell.seeded else [])


def done(out: str) -> bool:
    return os.path.isfile(os.path.join(out, "study_run.json"))


def settings_digest(cell: Cell) -> str:
    """sha256 of what makes a cell's runs: its recipe, its config's settings (parsed: comments do not count)
    and its override templates."""
    with open(os.path.join(REPO, "recipes", "configs", cell.config)) as f:
        config = yaml.safe_load(f)
    text = json.dumps([cell.recipe, cell.config, config, cell.overrides], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_settings(runs: str, chosen: list[Cell], seeds: list[int]) -> None:
    """Refuse to train or report when a finished run was made with other settings than its cell has now (its
    config file or overrides changed since): it would be skipped as done, or scored as if it were current.
    Runs recorded before the digest existed are taken as they are."""
    stale = []
    for cell in chosen:
        for seed in seeds if cell.seeded else [None]:
            out = run_dir(runs, cell, seed)
            if not done(out):
                continue
            with open(os.path.join(out, "study_run.json")) as f:
                recorded = json.load(f).get("settings_sha256")
            if recorded is not None and recorded != settings_digest(cell):
                stale.append(out)
    legacy = legacy_runs(runs, chosen, seeds)
    if legacy:
        print(f"{len(legacy)} finished run(s) carry no settings digest (recorded before it existed) and are taken as "
              f"they are: {', '.join(legacy)}", flush=True)  # fmt: skip
    if stale:
        raise SystemExit(
            f"{len(stale)} finished run(s) were made with other settings than their cell has now (its config "
            f"file or overrides changed): {stale}. Move them out of {runs} (or use a new --runs folder) to run "
            "them again with the current settings, or restore the old settings to report them."
        )


def legacy_runs(runs: str, chosen: list[Cell], seeds: list[int]) -> list[str]:
    """Folder names of the finished runs that carry no settings digest (made before the runner recorded one):
    nothing checks that their settings are the cell's current ones, so the reports name them."""
    legacy = []
    for cell in chosen:
        for seed in seeds if cell.seeded else [None]:
            out = run_dir(runs, cell, seed)
            if done(out):
                with open(os.path.join(out, "study_run.json")) as f:
                    if "settings_sha256" not in json.load(f):
                        legacy.append(os.path.basename(out))
    return legacy


def legacy_note(runs: str, chosen: list[Cell], seeds: list[int]) -> list[str]:
    """Report lines naming the runs without a settings digest (none: no lines)."""
    legacy = legacy_runs(runs, chosen, seeds)
    if not legacy:
        return []
    return ["", f"Runs recorded before the study runner kept a digest of their settings (taken as they are, not "
                f"checked against the cells' current settings): {', '.join(f'`{r}`' for r in legacy)}."]  # fmt: skip


def run_all(
    runs: str, cells: list[Cell], chosen: list[Cell], seeds: list[int], lanes: int, threads: int | None = None
) -> None:
    """Run every unfinished (cell, seed) over `lanes` worker threads, each job a subprocess with `threads`
    CPU threads (default: the machine's cores split between the lanes). Call `check_settings` first: a run
    left from other settings would be skipped here as done."""
    by_name = {c.name: c for c in cells}
    # Unseeded cells first, then seed by seed through the seeded ones: any finished prefix is paired.
    jobs = [(c, None) for c in chosen if not c.seeded]
    jobs += [(c, s) for s in seeds for c in chosen if c.seeded]
    jobs = [(c, s) for c, s in jobs if not done(run_dir(runs, c, s))]
    lock, running, failed = threading.Lock(), set(), set()
    threads = str(threads or max(1, (os.cpu_count() or 2) // lanes))
    os.makedirs(os.path.join(runs, "logs"), exist_ok=True)

    def needed(cell: Cell, seed: int | None) -> list[str]:
        names = (
            [] if cell.needs is None else [cell.needs] if isinstance(cell.needs, str) else list(cell.needs)
        )
        return [run_dir(runs, by_name[name], seed) for name in names]

    def worker() -> None:
        while True:
            with lock:
                pending = [j for j in jobs if (j[0].name, j[1]) not in running]
                # A job whose prerequisite failed can never run: drop it instead of waiting forever.
                for job in [j for j in pending if any(d in failed for d in needed(*j))]:
                    jobs.remove(job)
                    pending.remove(job)
                if not pending:
                    return
                job = next((j for j in pending if all(done(d) for d in needed(*j))), None)
                if job is not None:
                    running.add((job[0].name, job[1]))
            if job is None:  # everything left waits for a run another lane is doing
                time.sleep(30)
                continue
            cell, seed = job
            out = run_dir(runs, cell, seed)
            cmd = command(runs, cell, seed)
            log = os.path.join(runs, "logs", f"{os.path.basename(out)}.log")
            start = time.time()
            print(f"[{time.strftime('%H:%M')}] start {os.path.basename(out)} (log {log})", flush=True)
            env = {**os.environ, "OMP_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
            with open(log, "w") as f:
                rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
            minutes = (time.time() - start) / 60
            print(
                f"[{time.strftime('%H:%M')}] {os.path.basename(out)}: rc {rc}, {minutes:.1f} min", flush=True
            )
            with lock:
                if rc == 0:
                    with open(os.path.join(out, "study_run.json"), "w") as f:
                        json.dump(
                            {
                                "command": cmd,
                                "minutes": round(minutes, 1),
                                "threads": int(threads),
                                "settings_sha256": settings_digest(cell),
                            },  # fmt: skip
                            f,
                            indent=2,
                        )
                else:
                    failed.add(out)
                jobs.remove(job)
                running.discard((cell.name, seed))

    workers = [threading.Thread(target=worker) for _ in range(lanes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else float("nan")


def cell_settings(cell: Cell) -> dict:
    """A cell's effective settings: its config file's keys with its overrides (``--key value ...``) on top."""
    with open(os.path.join(REPO, "recipes", "configs", cell.config)) as f:
        settings = dict(yaml.safe_load(f))
    key = None
    for token in cell.overrides:
        if token.startswith("--"):
            key = token[2:]
            settings[key] = True
        elif key is not None:
            settings[key] = token if settings[key] is True else [*np.atleast_1d(settings[key]), token]
    return settings


def picked_on_validation(cell: Cell) -> str:
    """What a cell's runs choose on the validation set that then scores them: the epoch kept, when it trains
    several epochs and keeps the best one (early stopping on validation accuracy); '' when nothing."""
    settings = cell_settings(cell)
    epochs = float(settings.get("num_train_epochs", 1))
    return (
        "epoch kept" if epochs > 1 and settings.get("early_stopping_patience") not in (None, 0, "0") else ""
    )


Predictions = dict[int | None, tuple[np.ndarray, np.ndarray]]  # seed -> (predicted ids, gold ids)


def paired_tests(got: Predictions, base: Predictions) -> dict | None:
    """`got` against `base` on the seeds both have (`hfkit.metrics.paired_comparison`: McNemar per seed, paired
    t over seeds, bootstrap over rows of the seed-averaged correctness), difference in points; None when they
    share no seed."""
    from hfkit.metrics import paired_comparison

    common = sorted((s for s in got if s in base), key=lambda s: -1 if s is None else s)
    if not common:
        return None
    gold = got[common[0]][1]
    tests = paired_comparison([base[s][0] for s in common], [got[s][0] for s in common], gold)
    return {**tests, "seeds": common, "difference": 100 * tests["difference"]}


def paired_text(tests: dict | None) -> tuple[str, str, str, str]:
    """Table cells for `paired_tests`: difference, McNemar per seed (rows only one side gets right and p),
    paired t p over seeds, bootstrap 95% interval and p; '-' each when there is nothing to compare."""
    if tests is None:
        return "-", "-", "-", "-"
    mcnemar_text = "; ".join(f"{m['b_only']}/{m['a_only']} p {m['p_value']:.2g}" for m in tests["mcnemar"])
    t_p = tests["t_test"]["p_value"]
    boot = tests["bootstrap"]
    return (
        f"{tests['difference']:+.2f}",
        mcnemar_text,
        "-" if np.isnan(t_p) else f"{t_p:.2g}",
        f"[{100 * boot['ci_low']:+.2f}, {100 * boot['ci_high']:+.2f}] p {boot['p_value']:.2g}",
    )


PAIRED_TESTS_NOTE = (
    "Paired tests on the same validation rows, seed by seed: McNemar per seed gives rows only the cell gets right "
    "/ rows only the baseline gets right and the exact p; paired t over the seeds' accuracies (df = seeds - 1); "
    "bootstrap: 10,000 resamples of the rows with each row's correctness averaged over the seeds (95% interval "
    "of the difference in points, and p). No correction for the number of comparisons: with k cells tested at "
    "0.05, about 0.05 k would pass by chance."
)


def commands_list(cells: list[Cell]) -> list[str]:
    """Markdown bullets: the command of each cell (seeded cells add `--seed S` and their own output_dir)."""
    return [
        f"- `{c.name}`: `python recipes/{c.recipe}.py --config recipes/configs/{c.config} {' '.join(c.overrides)}`"
        for c in cells
    ]
