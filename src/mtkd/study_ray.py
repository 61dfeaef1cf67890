"""Parallel studies on Ray: ``mtkd study FILE --workers N`` (a local Ray instance) or ``--address ADDR`` (a running
Ray cluster), each run one Ray task with its resources declared (``--gpus-per-run``, ``--cpus-per-run``).

Only the driver (the ``mtkd study`` process) plans, decides and writes: it holds the study folder's lock, reads each
run folder's state, submits a run once every teacher run of the same seed is done (a failed teacher skips its
students, as in a sequential study), and rewrites ``study.json`` after each outcome. A task trains one run with
:func:`mtkd.engine.run.train`, which takes the run folder's own lock, so reuse, resume and refusals are exactly those
of a sequential study (the decisions are made by the same :class:`mtkd.study.Step`). A run that fails (an mtkd
error, an exception, a worker that dies) is recorded with its error and the other runs go on. Interrupted, the
driver stops Ray's workers; every run in flight keeps its ``last.ckpt`` and the same command resumes all of them.

Determinism: a task trains with ``--cpus-per-run`` torch threads (default: the machine's cores divided by the
workers), so a study on Ray gives the sequential study's numbers digit for digit when that study runs with the
same thread count (CPU kernels may sum in another order with another thread count).

DDP inside a task: a run with ``trainer.devices`` > 1 reserves that many GPUs and must use
``trainer.strategy=ddp_spawn``: Lightning's default DDP launcher re-executes the command line, which inside a Ray
worker is Ray's own worker script. A run wider than one node is not a Ray task: train it with ``mtkd train`` under
SLURM (``srun``) into its study folder, and the study reuses it (docs/pipeline.md).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtkd.errors import MtkdError

INSTALL = 'Ray is not installed: pip install "mtkd[ray]" (or run the study sequentially, without --workers/--address)'
SPAWNING = ("ddp_spawn", "ddp_notebook", "ddp_fork")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _train_task(config: dict[str, Any], cwd: str, threads: int) -> str | None:
    """Inside a Ray worker: train one run; None when it finished, else its mtkd error in one line."""
    import warnings

    if os.path.isdir(cwd):  # relative paths in a config mean the driver's folder (a shared file system)
        os.chdir(cwd)
    import torch
    from omegaconf import OmegaConf

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", module="lightning")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mtkd.engine.run import train

    quiet = {**config, "trainer": {**config["trainer"], "progress_bar": False}}  # not a result: reuse ignores it
    try:
        train(OmegaConf.create(quiet))
    except MtkdError as err:
        return str(err)
    return None


@dataclass
class RayExecutor:
    """Runs a study's steps as Ray tasks. ``workers``: runs at once on a local Ray instance (default 1, or as many as
    the GPUs allow); ``address``: an existing cluster instead (``auto`` or ``host:port``)."""

    workers: int | None = None
    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: int | None = None

    def check(self) -> None:
        """Refuse bad numbers in one line, before Ray starts."""
        for name, value in (("--workers", self.workers), ("--cpus-per-run", self.cpus_per_run)):
            if value is not None and value < 1:
                raise MtkdError(f"{name} must be >= 1, got {value}")
        if self.gpus_per_run is not None and self.gpus_per_run < 0:
            raise MtkdError(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")
        if self.address and self.workers:
            raise MtkdError("--workers starts a local Ray instance, --address uses a running cluster: give one")
        if self.address is None:
            self._local_resources()
        else:
            self._probe()

    def _local_resources(self) -> tuple[int, int, float]:
        """(workers, CPUs per run, GPUs) of a local instance; more workers than this machine's devices is refused."""
        import torch

        cores, gpus = os.cpu_count() or 1, torch.cuda.device_count()
        per_gpu = self.gpus_per_run or 0
        if per_gpu and per_gpu > gpus:
            raise MtkdError(f"--gpus-per-run {per_gpu:g}: this machine has {gpus} GPU(s)"
                            + ("; drop --gpus-per-run to train on CPUs" if not gpus else ""))
        workers = self.workers or (int(gpus // per_gpu) if per_gpu else 1)
        if per_gpu and workers * per_gpu > gpus:
            raise MtkdError(f"--workers {workers} × --gpus-per-run {per_gpu:g} needs {workers * per_gpu:g} GPUs; this "
                            f"machine has {gpus}: use --workers {int(gpus // per_gpu)} or fewer")
        if workers > cores:
            raise MtkdError(f"--workers {workers} is more than this machine's {cores} CPU cores: use --workers "
                            f"{cores} or fewer")
        cpus = self.cpus_per_run or max(1, cores // workers)
        if workers * cpus > cores:
            raise MtkdError(f"--workers {workers} × --cpus-per-run {cpus} needs {workers * cpus} CPU cores; this "
                            f"machine has {cores}")
        return workers, cpus, (workers * per_gpu if per_gpu else 0)

    def _connect(self, ray: Any) -> bool:
        """Start or join Ray; True when this call started it (and must shut it down)."""
        if ray.is_initialized():  # a caller's instance (a notebook, a test session)
            return False
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
        if self.address:
            try:
                ray.init(address=self.address, **quiet)
            except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ... here
                raise MtkdError(f"cannot reach the Ray cluster at {self.address} ({_first_line(err)}); check it with "
                                "`ray status` on its head node, or run the study sequentially (without --address)"
                                ) from None
            return True
        workers, cpus, gpus = self._local_resources()
        ray.init(num_cpus=workers * cpus, num_gpus=gpus, include_dashboard=False, **quiet)
        return True

    def _probe(self, timeout: float = 5.0) -> None:
        """A ``host:port`` (or ``ray://host:port``) that accepts no connection is refused at once: ``ray.init``
        would retry it for minutes."""
        target = self.address.removeprefix("ray://")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            return  # "auto", or a form Ray resolves itself
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as err:
            raise MtkdError(f"cannot reach the Ray cluster at {self.address} ({err.strerror or err}); start it "
                            "(`ray start --head` on its head node) or run the study sequentially (without "
                            "--address)") from None

    def _resources(self, ray: Any, config: dict[str, Any]) -> dict[str, float]:
        """A run's Ray resources: its CPUs (``--cpus-per-run``, else the local instance's CPUs over the workers, or
        1 on a cluster) and GPUs (``--gpus-per-run``, else its ``trainer.devices`` where there are GPUs)."""
        total = ray.cluster_resources()
        trainer = config["trainer"]
        devices = trainer["devices"] if isinstance(trainer["devices"], int) else 1
        if self.gpus_per_run is not None:
            gpus = float(self.gpus_per_run)
        else:
            gpus = float(devices) if total.get("GPU", 0) and trainer["accelerator"] != "cpu" else 0.0
        if gpus > 1 and devices > 1 and trainer["strategy"] not in SPAWNING:
            raise MtkdError(f"run {config['name']}: {devices} devices inside a Ray task need "
                            "trainer.strategy=ddp_spawn (the default DDP launcher re-executes the command line, "
                            "which in a Ray worker is Ray's worker script)")
        cpus = self.cpus_per_run or (1 if self.address else max(1, int(total.get("CPU", 1) // (self.workers or 1))))
        return {"num_cpus": cpus, "num_gpus": gpus}

    def run(self, steps: list, failed: set[tuple[str, int]], save: Callable[[], None],
            log: Callable[[str], None]) -> None:
        """Train ``steps`` (:class:`mtkd.study.Step`, in plan order) as their teachers finish; ``save`` writes
        ``study.json`` after every change."""
        try:
            import ray
        except ImportError:
            raise MtkdError(INSTALL) from None
        self.check()
        started = self._connect(ray)
        try:
            self._loop(ray, steps, failed, save, log)
        finally:
            if started:
                ray.shutdown()

    def _loop(self, ray: Any, steps: list, failed: set[tuple[str, int]], save: Callable[[], None],
              log: Callable[[str], None]) -> None:
        resources = {id(s): self._resources(ray, s.run.config) for s in steps}  # refusals before anything trains
        task = ray.remote(max_retries=0)(_train_task)
        waiting, running, finished = list(steps), {}, set()
        log(f"Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs; "
            f"{len(steps)} runs")
        while waiting or running:
            before = len(waiting)
            for step in list(waiting):  # plan order: seeds outer, teachers first
                needs = [(m, step.run.seed) for m in step.run.needs]
                if not (any(n in failed for n in needs) or all(n in finished for n in needs)):
                    continue
                waiting.remove(step)
                if step.start(failed, log):
                    res = resources[id(step)]
                    ref = task.options(**res).remote(step.run.config, os.getcwd(), int(res["num_cpus"]))
                    running[ref] = (step, time.time())
                elif step.record["status"] == "done":
                    finished.add((step.run.method, step.run.seed))
                save()
            if not running:
                if waiting and len(waiting) == before:  # a pass that started nothing, with nothing in flight
                    stuck = ", ".join(f"{s.run.method} seed {s.run.seed}" for s in waiting)
                    raise MtkdError(f"study runs wait for teachers that are not planned: {stuck}")
                continue
            (ref,), _ = ray.wait(list(running), num_returns=1)
            step, start = running.pop(ref)
            error = self._outcome(ray, ref)
            step.finish(error, time.time() - start, failed, log)
            if error is None:
                finished.add((step.run.method, step.run.seed))
            save()

    @staticmethod
    def _outcome(ray: Any, ref: Any) -> str | None:
        """None for a finished run, else one line: its mtkd error, the exception it raised, or the worker's death."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(err.cause, BaseException) else err
            return f"{type(cause).__name__} in the Ray worker: {_first_line(cause)}"
        except ray.exceptions.RayError as err:  # the worker died (killed, out of memory), or the node did
            return f"the Ray worker died: {_first_line(err)}"
