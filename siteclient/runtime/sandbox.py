"""How a task's container is confined: the engine options and the folder it may write to.

:func:`container_options` is the single place where the confinement is decided; the runtime
passes its result to ``containers.create`` unchanged and checks the created container's mounts
with :func:`check_mounts`.

- **Mounts.** The task's config read-only at ``/pht/input/config.json``, optionally an input
  folder read-only at ``/pht/input/files``, and a fresh output folder at ``/pht/output``
  (:func:`make_run_dir`), owned by the container user (uid/gid 65534, ``nobody``) with mode 0700.
  A site that does not run as root cannot chown, so there the folder gets mode 0777 instead; it
  sits inside the task's private work folder (0700), which no other host user can enter, and the
  mode also works with a rootless engine, whose uid 65534 is some other uid on the host. Nothing
  else: an image that declares ``VOLUME``s is refused before it gets here.
- **Name.** ``pht-<first 12 hex of the task>-<site>-<run>`` (:func:`container_name`), so ``docker
  ps`` says which task and site a container belongs to; ``<run>`` is the run folder's random
  suffix, so a rerun never clashes with a container an earlier run left behind.
- **Environment.** ``SPARQL_ENDPOINT`` (left out when the site has no SPARQL store),
  ``PHT_TASK`` and ``PHT_SITE``; nothing from the site's own
  environment is ever passed. The engine still merges the image's own ``ENV`` (its author's,
  pinned by digest; ours win on a clash), adds a default ``PATH`` when the image sets none, and
  sets ``HOSTNAME`` (fixed here to ``pht``) and ``HOME`` (``/``). None of these carries site
  information, and an image relying on its own ``ENV`` (``PYTHONPATH``, ``LANG``) keeps working.
- **Privileges.** User ``65534:65534`` whatever the image says, ``cap_drop=ALL``,
  ``no-new-privileges`` (a setuid binary gains nothing), not privileged, the engine's default
  seccomp and AppArmor profiles, read-only root file system, private IPC namespace.
- **Scratch space.** ``/tmp`` is a tmpfs of ``tmpfs_bytes`` mounted ``noexec,nosuid,nodev``, and
  ``/dev/shm`` has the same size; both count against the memory limit.
- **Limits.** pids (a fork bomb stalls inside), memory with swap equal to it (no swap), CPUs
  (``nano_cpus``), open files, no core dumps, and a per-file size limit (``RLIMIT_FSIZE``) of the
  larger of the output and tmpfs limits, so one file can never be much larger than what
  collection would accept. ``oom_score_adj`` 1000 makes the task, not the site, the first victim
  of a host-wide memory shortage. ``docker-init`` runs as PID 1: it reaps zombies and passes
  the exit code on.
- **Network.** ``none`` (only a loopback interface) unless the spec names a user-defined Docker
  network; ``host``, ``bridge`` and ``container:...`` are refused by :class:`RunSpec`.
- **Logs.** The json-file driver is forced with ``max-size`` and ``max-file`` so a flood cannot
  fill the engine's disk (:func:`log_file_bytes`), whatever the engine's default driver is.
- **Health checks** declared by the image are disabled: the engine would run them as extra
  processes in the container on its own schedule.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from docker.types import LogConfig, Mount, Ulimit

from siteclient.errors import PolicyError, StateError
from siteclient.runtime.spec import RunSpec

CONTAINER_UID = 65534
CONTAINER_GID = 65534
CONFIG_TARGET = "/pht/input/config.json"
INPUT_TARGET = "/pht/input/files"
OUTPUT_TARGET = "/pht/output"
TMP_TARGET = "/tmp"  # noqa: S108 - inside the container, a tmpfs of its own
LABEL_SITE = "org.pht.site"
LABEL_TASK = "org.pht.task"
HOSTNAME = "pht"
LOG_FILES = 2


def container_options(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """Keyword arguments for ``containers.create`` that confine ``spec``'s container."""
    limits = spec.limits
    mounts = [
        Mount(CONFIG_TARGET, str(run_dir / "config.json"), type="bind", read_only=True),
        Mount(OUTPUT_TARGET, str(run_dir / "output"), type="bind", read_only=False),
    ]
    if spec.input_dir is not None:
        mounts.append(
            Mount(INPUT_TARGET, str(spec.input_dir.resolve()), type="bind", read_only=True)
        )
    file_limit = max(limits.output_max_bytes, limits.tmpfs_bytes) + 1
    environment = {"PHT_TASK": spec.task, "PHT_SITE": spec.site}
    if spec.sparql_endpoint is not None:
        environment["SPARQL_ENDPOINT"] = spec.sparql_endpoint
    return {
        "name": container_name(spec, run_dir),
        "environment": environment,
        "hostname": HOSTNAME,
        "user": f"{CONTAINER_UID}:{CONTAINER_GID}",
        "mounts": mounts,
        "read_only": True,
        "tmpfs": {TMP_TARGET: f"rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes}"},
        "ipc_mode": "private",
        "shm_size": limits.tmpfs_bytes,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "init": True,
        "network_mode": spec.network or "none",
        "pids_limit": limits.pids,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "oom_score_adj": 1000,
        "ulimits": [
            Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="fsize", soft=file_limit, hard=file_limit),
        ],
        "log_config": LogConfig(
            type=LogConfig.types.JSON,
            config={
                "max-size": f"{log_file_bytes(limits.log_max_bytes) // 1024}k",
                "max-file": str(LOG_FILES),
            },
        ),
        "healthcheck": {"test": ["NONE"]},
        "labels": {LABEL_SITE: spec.site, LABEL_TASK: spec.task},
        "stdin_open": False,
        "tty": False,
    }


def container_name(spec: RunSpec, run_dir: Path) -> str:
    """``pht-<task12>-<site>-<run>``: a valid Docker name (``[a-zA-Z0-9][a-zA-Z0-9_.-]*``; task
    ids are hex, site names and ``mkdtemp`` suffixes use only those characters), unique per run."""
    run = run_dir.name.removeprefix("run-")
    return f"pht-{spec.task[:12]}-{spec.site[:64]}-{run}"


def check_mounts(attrs: Mapping[str, Any], spec: RunSpec) -> None:
    """The created container has exactly our bind mounts and no volume. Raises PolicyError."""
    mounts = attrs.get("Mounts") or []
    expected = {CONFIG_TARGET, OUTPUT_TARGET} | ({INPUT_TARGET} if spec.input_dir else set())
    found = {str(m.get("Destination")) for m in mounts}
    kinds = {str(m.get("Type")) for m in mounts}
    if found != expected or kinds != {"bind"}:
        raise PolicyError(
            f"the container would get mounts {sorted(found)} of types {sorted(kinds)}; "
            f"expected only {sorted(expected)} as binds"
        )


def make_run_dir(spec: RunSpec) -> Path:
    """A fresh folder in ``spec.work_dir`` with ``config.json`` (0444) and ``output/``.

    Raises StateError if it cannot be made. The caller removes it when the run is reported.
    """
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=spec.work_dir))
        config = run_dir / "config.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "wb") as handle:
            handle.write(spec.config)
        os.chmod(config, 0o444)  # whatever the umask: the container user must read it
        output = run_dir / "output"
        output.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(output, CONTAINER_UID, CONTAINER_GID)
        else:
            os.chmod(output, 0o777)  # noqa: S103 - see the module docstring
    except OSError as exc:
        raise StateError(f"cannot prepare a run folder in {spec.work_dir}: {exc}") from exc
    return run_dir


def log_file_bytes(limit: int) -> int:
    """The json-file ``max-size`` that makes a lost log head show as more than ``limit`` bytes.

    The engine deletes the oldest file only on the second rotation, so whenever anything was
    dropped a whole file of at least ``max-size`` bytes remains. A json-file entry costs at most
    about 75 bytes per byte of output (a one-byte line, or ``\\u00XX`` escapes, plus the stream
    name and time): with ``max-size`` 80 times ``limit``, that file alone holds more than
    ``limit`` bytes of output, so ``log_truncated`` is exact. The engine's disk use for one
    container's log is bounded by :data:`LOG_FILES` such files.
    """
    return max(1 << 20, 80 * limit)
