"""`salclass study --jobs N [--ray-address ADDR]`: the study's runs as Ray tasks.

The driver (this process) keeps everything else: it holds the study folder's
lock, packs the store, predicts the maps and writes the report. Here it only
decides which of the runs salclass.study.plan planned may start: a run starts
once its parent (the run a fine-tune starts from, same seed) has finished, and
at most N runs go at once. Each task trains and evaluates one run folder,
writing nothing else, and prints into that folder's log (RunFolder.log). The
study folder must be on a filesystem every node sees.

A worker that dies takes its task with it; Ray runs the task again (at most
RETRIES times) and train(resume=True) continues from the last epoch's
checkpoint. A run that fails for a reason of its own (a UserError, which
includes a NaN stop) is not retried: it fails alone, its dependents are
skipped, and the study ends with a summary (a UserError) after every other run.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from salclass.errors import UserError
from salclass.run_folder import RunFolder
from salclass.study import steps
from salclass.study.config import StudyConfig
from salclass.study.folder import StudyFolder
from salclass.study.plan import PlannedRun, drop_unneeded_checkpoints, plan_runs
from salclass.study.steps import note
from salclass.say import agree, counted

RETRIES = 3  # a run whose worker died this many times more is given up
TAIL_LINES = 12  # of a failed run's log, shown in the summary
PROGRESS_EVERY_S = 60.0  # a progress line at least this often, and at every change
STOP_GRACE_S = 60.0  # after Ctrl-C, how long the runs get to stop at a batch boundary
CONNECT_TIMEOUT_S = 10.0  # for the head node to answer at --ray-address
# Only small dicts travel through Ray's object store; a small one spares shared machines' /dev/shm.
OBJECT_STORE_BYTES = 100 * 1024 ** 2


@contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (Python's and the C library's alike) to
    `path` until the block ends: the worker goes on to run other tasks afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_one(settings: dict, val_split: str) -> str | None:
    """Train and evaluate one run folder (the body of a Ray task). Returns None,
    or the UserError that stopped the run."""
    folder = RunFolder(settings["out"])
    folder.path.mkdir(parents=True, exist_ok=True)
    with _output_to(folder.log):
        # The pid names the process to look for when a run hangs (or a test kills it).
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}, pid {os.getpid()}", flush=True)
        try:
            steps.train(settings)
            steps.evaluate(folder.path, Path(val_split), settings.get("device", "auto"))
        except UserError as e:
            print(f"error: {e}", flush=True)
            return str(e)
        except Exception:
            traceback.print_exc()
            raise
    return None


def _absolute(settings: dict) -> dict:
    """Workers may run in another folder than the driver (on another node, the same path)."""
    out = dict(settings)
    for key in ("store", "out", "init_from"):
        if out.get(key) is not None:
            out[key] = str(Path(out[key]).absolute())
    return out


@contextmanager
def joined(address: str | None):
    """In the block, this process is joined to the Ray cluster at `address` (or
    `auto`): joined before the data are prepared, so that a wrong address is one
    line within seconds, not after an hour of packing. With no address nothing
    happens here; `run_parallel` starts a local Ray when there are runs to do."""
    import ray

    if address is None or ray.is_initialized():  # already joined (a notebook, a test): left as it is
        yield
        return
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    except ConnectionError as e:
        raise UserError(f"--ray-address {address}: cannot join that Ray cluster ({e})") from None
    try:
        yield
    finally:
        ray.shutdown()


# Ray's logger for its token-authentication set-up (the module's name, so this is
# the only place to change if Ray moves it: at worst the notice comes back).
RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


class _TokenEnabledNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _quiet_token_notice() -> None:
    """The local Ray started for a study announces that it turned token
    authentication on (Ray's safe default) on every start: noise on a study's
    terminal. Only that notice is dropped; Ray's warning that authentication is
    off still shows."""
    log = logging.getLogger(RAY_TOKEN_LOGGER)
    if not any(isinstance(f, _TokenEnabledNotice) for f in log.filters):
        log.addFilter(_TokenEnabledNotice())


def _check_reachable(address: str) -> None:
    """A HOST:PORT where nothing listens is one line within seconds: Ray itself
    keeps retrying such an address for minutes."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UserError(f"--ray-address {address}: expected HOST:PORT (the head node's GCS address), or auto")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserError(f"--ray-address {address}: cannot join that Ray cluster (nothing answers there: "
                        f"{e.strerror or e})") from None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in lines[-TAIL_LINES:])


class _Progress:
    """The study's progress line. What is left is estimated from epochs, not
    runs: runs differ in length (a fine-tune is a few epochs), and the epochs
    finished since the study started, over every running run, measure the rate
    at which this study's workers get through them."""

    def __init__(self, todo: list[PlannedRun], total: int, reused: int):
        self.total, self.reused = total, reused
        self.runs = [(RunFolder(r.settings["out"]), steps.train_config(r.settings).epochs) for r in todo]
        self.epochs = sum(n for _, n in self.runs)
        self.at_start = self._epochs_done()
        self.start = time.monotonic()
        self.last_line, self.last_time = "", 0.0

    def _epochs_done(self) -> int:
        done = 0
        for folder, epochs in self.runs:
            try:
                done += min(epochs, len(folder.read_metrics()))
            except UserError:  # a damaged metrics file is the run's own error, reported by the run
                pass
        return done

    def show(self, done: int, running: int, waiting: int, failed: int) -> None:
        el = time.monotonic() - self.start
        line = f"runs: {done}/{self.total} done, {running} running, {waiting} waiting"
        if failed:
            line += f", {failed} failed or skipped"
        if line == self.last_line and time.monotonic() - self.last_time < PROGRESS_EVERY_S:
            return
        self.last_line, self.last_time = line, time.monotonic()
        epochs = self._epochs_done()
        left = ""
        if epochs > self.at_start and running + waiting:
            rate = (epochs - self.at_start) / el
            left = f", about {(self.epochs - epochs) / rate / 60:.0f} min left"
        note(f"{line}; epochs {epochs}/{self.epochs} ({el / 60:.1f} min elapsed{left})")


def _tasks(cfg: StudyConfig, study: StudyFolder) -> tuple[list[PlannedRun], int]:
    """The planned runs still to do, parents first, with the settings their
    tasks get, and how many are reused as they are."""
    runs = plan_runs(cfg, study)
    # Progress bars redrawn with carriage returns would fill the run's log.
    todo = [replace(r, settings={**_absolute(r.settings), "progress": False}) for r in runs if r.action != "reuse"]
    return todo, len(runs) - len(todo)


def _resources(run: PlannedRun, gpus: bool) -> dict:
    threads = run.settings.get("threads")
    if gpus and run.settings.get("device", "auto") != "cpu":
        return {"num_gpus": 1, "num_cpus": threads or 1}
    if threads is None:
        raise UserError(f"experiment {run.e.name}: a parallel study on CPUs needs a fixed number of threads per run "
                        "(CPU results depend on it): set train.threads, e.g. --set train.threads=1")
    return {"num_cpus": threads, "num_gpus": 0}


def check_local(cfg: StudyConfig, study: StudyFolder) -> None:
    """Before the data are prepared: the runs of a study on a local Ray can claim their resources."""
    import torch

    for run in plan_runs(cfg, study):
        _resources(run, torch.cuda.is_available())


def run_parallel(cfg: StudyConfig, study: StudyFolder, jobs: int, drop: bool = False) -> None:
    """Train and evaluate every run not yet finished, at most `jobs` at once, on
    the Ray cluster this process has joined, or else on a local Ray started here
    for the runs. Raises UserError naming every failed or skipped run. With
    `drop`, the driver deletes checkpoints no run needs any more (plan.drop_unneeded_checkpoints)
    at the start and after every finished run."""
    import ray

    todo, reused = _tasks(cfg, study)
    after_run = (lambda: drop_unneeded_checkpoints(cfg, study)) if drop else (lambda: None)
    after_run()
    total = len(todo) + reused
    if reused:
        note(f"{reused} of {total} runs were already finished and reused")
    if not todo:
        return
    local = not ray.is_initialized()
    if local:
        _quiet_token_notice()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="warning",
                 object_store_memory=OBJECT_STORE_BYTES)
    try:
        _schedule(todo, reused, total, jobs, str(study.val_split.absolute()), after_run)
    finally:
        if local:
            ray.shutdown()


def _schedule(todo: list[PlannedRun], reused: int, total: int, jobs: int, val_split: str, after_run) -> None:
    import ray

    gpus = ray.cluster_resources().get("GPU", 0) > 0
    resources = {r.name: _resources(r, gpus) for r in todo}
    task = ray.remote(run_one)
    waiting = list(todo)
    running: dict = {}  # object ref -> run
    finished: set[str] = set()
    failed: dict[str, str] = {}  # run name -> why (failed or skipped)
    progress = _Progress(todo, total, reused)
    to_do = {r.name for r in todo}
    try:
        while waiting or running:
            for run in list(waiting):
                if run.parent in failed:
                    failed[run.name] = f"skipped: it starts from {run.parent}, which did not finish"
                    waiting.remove(run)
                elif len(running) < jobs and (run.parent not in to_do or run.parent in finished):
                    ref = task.options(max_retries=RETRIES, retry_exceptions=False,
                                       **resources[run.name]).remote(run.settings, val_split)
                    running[ref] = run
                    waiting.remove(run)
            progress.show(reused + len(finished), len(running), len(waiting), len(failed))
            if not running:
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=PROGRESS_EVERY_S)
            for ref in ready:
                run = running.pop(ref)
                try:
                    error = ray.get(ref)
                except ray.exceptions.RayError as e:
                    error = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                if error is None:
                    finished.add(run.name)
                    after_run()
                else:
                    log = RunFolder(run.settings["out"]).log
                    failed[run.name] = f"failed: {error}\n  last lines of {log}:\n{_tail(log)}"
        progress.show(reused + len(finished), 0, 0, len(failed))
    except KeyboardInterrupt:
        note(f"stopping {counted(len(running), 'running run')} at {agree(len(running), 'its', 'their')} next batch; "
             "each keeps its last finished epoch")
        for ref in running:
            ray.cancel(ref)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=STOP_GRACE_S)
        raise
    if failed:
        lines = [f"{len(failed)} of {total} runs did not finish:"]
        lines += [f"- {name}: {why}" for name, why in failed.items()]
        lines.append("Fix the cause and run the same command again: finished runs are kept, the others go on.")
        raise UserError("\n".join(lines))
