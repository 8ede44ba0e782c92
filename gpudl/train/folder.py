"""Run folders: one run at a time writes into a folder, and a run that is there is replaced only when asked.

`claim_run_folder(out, resume, force)` holds the folder for the length of a `with` block:
- `out` naming an existing file (not a folder) is refused at once, before any training;
- the lock file out/.gpudl.lock holds the pid of the run that owns the folder. It is locked with flock(2), which
  the kernel releases when its process ends however it ends, so a lock left by a dead (killed) run is stale and
  simply taken over, while a second live run is refused with a message naming the owner's pid. Without flock
  (not POSIX), the lock file is created with O_CREAT | O_EXCL and a stale one is recognised by its pid;
- a folder the claim created is removed again when the run left nothing in it;
- a folder that holds a run (checkpoint.npz, model.npz or report.json) is refused unless `resume` (continue it)
  or `force` (its run files are deleted once the folder is held, so nothing of the old run mixes with the new).
"""
import contextlib
import os

from ..readers import read_json
from .report import CHECKPOINT, MODEL, REPORT, RUN_FILES

try:
    import fcntl
except ImportError:     # not POSIX: the O_EXCL fallback below
    fcntl = None

LOCK = ".gpudl.lock"


class RunFolderError(ValueError):
    """A run folder that this run may not use (in use, holds a run, or is not a folder)."""


def _pid_in(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _in_use(out, path, pid):
    who = f"pid {pid}" if pid is not None else "a process that is starting"
    return RunFolderError(f"{out} is in use by another run ({who}; lock file {path}); wait for it to end or pass "
                          f"another --out")


def _lock_flock(out, path):
    """A descriptor of the lock file at `path`, flock-ed by this process and holding its pid."""
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            os.close(fd)
            raise _in_use(out, path, pid) from None
        try:    # the previous owner unlinks the file on release: hold the one that is at `path` now
            here, locked = os.stat(path), os.fstat(fd)
            current = (here.st_dev, here.st_ino) == (locked.st_dev, locked.st_ino)
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
    raise RunFolderError(f"{out}: could not take its lock file {path} (other runs keep replacing it)")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _lock_exclusive(out, path):
    """The fallback without flock: create the lock file exclusively; take over one whose pid has ended."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            with open(path, "rb") as f:
                text = f.read(64).decode("ascii", "replace").strip()
            pid = int(text) if text.isdigit() else None
            if pid is None or _alive(pid):
                raise _in_use(out, path, pid) from None
            os.remove(path)
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd
    raise RunFolderError(f"{out}: could not take its lock file {path}")


def describe_run(out):
    """"a finished run (lenet5, completed after 30 of 30 epochs)" or similar for the run in `out`; None if none."""
    present = [name for name in (CHECKPOINT, MODEL, REPORT) if os.path.exists(os.path.join(out, name))]
    if not present:
        return None
    try:
        report = read_json(os.path.join(out, REPORT), "report.json")
        status = str(report.get("status", "unknown"))
        model = report.get("config", {}).get("model", "unknown model")
    except (OSError, ValueError, AttributeError):
        return f"an earlier run ({', '.join(present)})"
    finished = status in ("completed", "converged", "not converged")
    return f"{'a finished' if finished else 'an unfinished'} run ({model}, {status})"


@contextlib.contextmanager
def claim_run_folder(out, resume=False, force=False):
    """Hold the run folder `out` for the `with` block (see the module's docstring); yields `out`."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunFolderError(f"--out {out}: is a file, not a folder; pass a folder for the run's files")
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK)
    fd = (_lock_flock if fcntl is not None else _lock_exclusive)(out, path)
    try:
        held = describe_run(out)
        if held and not (resume or force):
            raise RunFolderError(f"{out} holds {held}: pass --resume to continue it, --force to replace it, or "
                                 f"another --out")
        if force and not resume:
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(out, name))
        yield out
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(fd)
        if created:     # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(out)
