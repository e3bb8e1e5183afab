"""Run the job a config names: `config.job(config, workdir)`.

    python -m jaxsuite.launch                                    # configs/halo_tiny.py, ./runs/halo_tiny
    python -m jaxsuite.launch --config configs/qwen3_pretrain.py:tiny --config.train.steps=20
    python -m jaxsuite.launch --config my.py --workdir gs://bucket/run1 \\
        --coordinator_address 10.0.0.2:1234 --num_processes 2 --process_id 0      # or SLURM / TPU pod: auto
    python -m jaxsuite.launch --config configs/qwen3_pretrain.py:1.7b --compile_only --topology v5p:2x2x1

The launcher parses flags, joins the other processes (jax.distributed) before any other JAX use, writes the
resolved config to workdir/config.json and calls the job. It knows no system by name: a new system is a new
config whose `job` points at its `run(config, workdir)`. Logic lives in jaxsuite.core.config_utils and
jaxsuite.core.distributed so it can be tested in-process.
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
from typing import Any, Sequence

from jaxsuite.core import config_utils, distributed

log = logging.getLogger("jaxsuite.launch")


def parse_args(argv: Sequence[str]) -> config_utils.LaunchArgs:
    """The command line (without the program name) -> config with overrides applied, workdir, process flags.

    Raises config_utils.ConfigError naming the bad file, key or value."""
    return config_utils.parse_launch_args(argv)


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("jaxsuite").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)   # orbax logs every file operation at INFO
    logging.getLogger("jax").setLevel(logging.WARNING)    # e.g. "Unable to initialize backend tpu"


def compile_only(args: config_utils.LaunchArgs) -> dict[str, Any]:
    """`--compile_only --topology T`: compiles every program of the job for T on this machine (deviceless for
    TPU targets), writes workdir/compile_report.json, prints the table, and exits 1 if a program does not fit.
    Runs nothing and joins no other process; the runtime stays on the CPU."""
    # The target is compiled for, not run on: the runtime stays on the CPU. The config module may have imported
    # jax already, so the environment variable alone would come too late; jax reads its flag when the backends
    # start. Starting the CUDA plugin's backend on a host without a GPU would also unregister it, and with it the
    # deviceless GPU topology.
    if not os.environ.get("JAX_PLATFORMS"):
        import jax
        jax.config.update("jax_platforms", "cpu")
    from jaxsuite.core import aot
    from jaxsuite.core.build import mesh_and_rules

    programs = config_utils.import_programs(args.config.job)
    target = aot.resolve_target(args.topology)
    mesh, rules = mesh_and_rules(args.config, target.devices)
    log.info("compile only: job %s for %s, mesh %s", args.config.job, target.name, dict(mesh.shape))
    selected = programs(args.config, mesh, rules)
    if args.programs:
        import fnmatch
        names = [p.name for p in selected]
        selected = [p for p in selected if any(fnmatch.fnmatchcase(p.name, pat) for pat in args.programs)]
        if not selected:
            raise config_utils.ConfigError(f"--programs {','.join(args.programs)} matches none of the job's "
                                           f"programs: {', '.join(names)}")
    about = {"config": str(args.config_path) + (f":{args.config_arg}" if args.config_arg else ""),
             "mesh": dict(mesh.shape)}

    def save(report):     # after every program: a run stopped part-way keeps the rows it finished
        return aot.write_report({**report, **about, "complete": len(report["programs"]) == len(selected)},
                                args.workdir)

    report = aot.compile_report(selected, target, log=log.info, on_row=save)
    report.update(about, complete=True)
    path = save(report)
    print(aot.format_table(report), flush=True)
    print(f"report: {path}", flush=True)
    if not report["all_fit"]:
        failed = [r["program"] for r in report["programs"] if r["fits"] is False]
        print(f"python -m jaxsuite.launch: does not fit {target.name}: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return report


# What a user's input causes (config values, data files, checkpoints, paths): reported in one line. ValueError
# covers ConfigError, CheckpointMismatchError, JSON and data errors; the messages name the key, file or tensor.
INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[:3])[:1000]
    # a ValueError's message is written to be read alone (it names the key, file or tensor); an OS error's needs
    # its kind
    return text if isinstance(e, ValueError) else f"{type(e).__name__}: {text}"


def _exit_now(plan, code: int, lock=None, together: bool = False) -> None:
    """Releases `lock` and exits with `code`. A multi-process run skips any `finally`, hence the release here.

    `together`: every process stops here at the same step (an agreed stop), so they leave through
    jax.distributed's shutdown barrier: if the coordinator (process 0) exited first, the others' coordination
    agents would find it gone and abort the process (exit -6) instead of exiting 143. Otherwise the others may
    be stopping at another point, and the barrier would wait for them until its timeout."""
    if lock is not None:
        lock.release()
    if plan.multi_process:
        if together:
            import jax
            try:
                jax.distributed.shutdown()
            except Exception as e:   # a peer already gone: exit anyway, with our own code
                log.warning("jax.distributed.shutdown failed: %s", e)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> Any:
    """Parses `argv` (default sys.argv[1:]), initialises jax.distributed if needed and runs the job.

    Returns the job's return value. Bad arguments exit with status 2 and a message on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(config_utils.launch_help())
        return None
    if "--list" in argv:      # every config with its variants, one line each
        print(config_utils.format_config_list(config_utils.list_configs()))
        return None
    _setup_logging()
    try:
        args = parse_args(argv)
        if args.compile_only:
            return compile_only(args)
        plan = distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    except ValueError as e:   # ConfigError is a ValueError; so are bad process flags
        print(f"python -m jaxsuite.launch: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None

    import jax   # only now: jax.distributed must be initialised before the backend exists

    try:   # imported after initialisation: a job module may create arrays at import time
        job = config_utils.import_job(args.config.job)
    except config_utils.ConfigError as e:
        print(f"python -m jaxsuite.launch: error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    from jaxsuite.core.lock import WorkdirLock, WorkdirLocked
    lock = WorkdirLock(args.workdir, primary=jax.process_index() == 0)
    try:
        lock.acquire()     # one run per workdir: a second one stops here, before it touches anything
    except WorkdirLocked as e:      # (the other processes of a multi-process run would wait in a barrier)
        print(f"python -m jaxsuite.launch: error: {e}", file=sys.stderr, flush=True)
        _exit_now(plan, 2)
    if jax.process_index() == 0:
        config_utils.dump_config(args.config, args.workdir)
    log.info("job %s | workdir %s | process %d/%d | %d devices (%s)", args.config.job, args.workdir,
             jax.process_index(), jax.process_count(), jax.device_count(), jax.default_backend())
    from jaxsuite.core import interrupt
    resume = "python -m jaxsuite.launch " + shlex.join(argv)
    try:
        with interrupt.handling_signals():   # Ctrl-C / SIGTERM: a checkpoint at the step boundary, then Stopped
            return job(args.config, args.workdir)
    except interrupt.Stopped as e:       # a clean stop: the checkpoint is saved, no traceback
        print(f"python -m jaxsuite.launch: {e}. Resume with:\n  {resume}", file=sys.stderr, flush=True)
        _exit_now(plan, 128 + e.signum, lock, together=True)
    except INPUT_ERRORS as e:            # a bad value, a missing or corrupt file: one line, unless --debug
        if args.debug:
            raise
        print(f"python -m jaxsuite.launch: error: {_one_line(e)} (--debug shows the traceback)", file=sys.stderr,
              flush=True)
        _exit_now(plan, 1, lock)
    except KeyboardInterrupt:            # Ctrl-C outside a training loop's step boundary
        print(f"python -m jaxsuite.launch: interrupted; a run resumes from its last checkpoint in {args.workdir}. "
              f"Resume with:\n  {resume}", file=sys.stderr, flush=True)
        _exit_now(plan, 130, lock)
    except BaseException as e:
        lock.release()
        if not plan.multi_process or (isinstance(e, SystemExit) and e.code in (0, None)):
            raise
        # A failed process must exit now: at interpreter exit jax.distributed.shutdown() waits in a barrier
        # for the other processes, which are themselves waiting for this one in a collective, so the failure
        # would only surface after a timeout. The scheduler (srun --kill-on-bad-exit, gcloud ssh) or jax's
        # heartbeat then stops the others.
        log.exception("job failed on process %d of %d; exiting without waiting for the others",
                      jax.process_index(), jax.process_count())
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    finally:
        lock.release()


if __name__ == "__main__":
    main()
