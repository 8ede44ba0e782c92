"""Run folders: one run at a time writes into a folder, and the run that is there is replaced only when asked.

`claim_run_folder(out, resume, force)` holds the folder for the length of a `with` block:
- `out` naming an existing file (not a folder) is refused at once, before any training;
- the lock file out/.gpudl.lock holds the pid of the run that owns the folder. It is locked with flock(2), which
  the kernel releases when its process ends however it ends, so a lock left by a dead (killed) run is stale and
  simply taken over, while a second live run is refused with a message naming the owner's pid. Without flock
  (not POSIX), the lock file is created with O_CREAT | O_EXCL and a stale one is recognised by its pid;
- a folder the claim created is removed again when the run left nothing in it;
- a folder that holds a run is refused unless `resume` (continue it) or `force` (replace it); a run that ended
  before its first checkpoint (failed, stopped or killed) holds nothing to continue, so a new run starts afresh
  there, saying so;
- `force` moves the old run's files (report.py's RUN_FILES, model.onnx included, and its TensorBoard events) aside
  into out/.gpudl-replaced and deletes them only once the new run has written its first checkpoint (or model): a
  new run that fails before that gives the folder back to the old one. Files a run does not write are not touched.
"""
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass

from ..readers import read_json
from .report import CHECKPOINT, COMPLETED, MODEL, ONNX, REPORT, RUNNING, run_artefacts

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


STASH = ".gpudl-replaced"
FINISHED = (COMPLETED, "converged", "not converged")    # and the states reports of earlier versions wrote


@dataclass
class HeldRun:
    """The run a folder holds, as its files tell."""
    files: list
    status: str | None = None        # None: no readable report.json
    model: str = "unknown model"
    reason: str | None = None

    @property
    def finished(self):
        return self.status in FINISHED

    @property
    def before_first_checkpoint(self):
        """A run that ended (or was killed) before writing a checkpoint or a model: nothing to continue."""
        return (self.status is not None and not self.finished and CHECKPOINT not in self.files
                and MODEL not in self.files)

    def __str__(self):
        if self.status is None:
            return f"an earlier run ({', '.join(self.files)})"
        if self.finished:
            return f"a finished run ({self.model}, {self.status})"
        if self.status == RUNNING:      # this process holds the lock: the run that wrote "running" is gone
            return f"an unfinished run ({self.model}, killed while running)"
        return f"an unfinished run ({self.model}, {self.status}" + (f": {self.reason})" if self.reason else ")")


def describe_run(out):
    """The HeldRun in folder `out`, or None when it holds no run's files."""
    files = run_artefacts(out)
    if not files:
        return None
    try:
        report = read_json(os.path.join(out, REPORT), "report.json")
        return HeldRun(files, str(report.get("status", "unknown")),
                       str(report.get("config", {}).get("model", "unknown model")), report.get("reason"))
    except (OSError, ValueError, AttributeError):
        return HeldRun(files)


def _say(text):
    print(f"gpudl: {text}", file=sys.stderr, flush=True)


def _move(names, source, target):
    os.makedirs(target, exist_ok=True)
    for name in names:
        os.replace(os.path.join(source, name), os.path.join(target, name))


def _remove(out, names):
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))


def _settle_stash(out, say):
    """End a replacement (--force) whose new run is over, or was killed: the old run's files are deleted when the
    new run wrote a checkpoint or model, else put back in place of the new run's."""
    stash = os.path.join(out, STASH)
    if not os.path.isdir(stash):
        return
    if any(os.path.exists(os.path.join(out, name)) for name in (CHECKPOINT, MODEL)):
        shutil.rmtree(stash)
        return
    _remove(out, run_artefacts(out))
    _move(os.listdir(stash), stash, out)
    os.rmdir(stash)
    say(f"--force: the new run ended before its first checkpoint; {out} holds the run it was to replace again")


@contextlib.contextmanager
def claim_run_folder(out, resume=False, force=False, say=_say):
    """Hold the run folder `out` for the `with` block (see the module's docstring); yields `out`. `say(text)`
    reports what the claim did to the folder (stderr by default)."""
    if not out:
        raise RunFolderError("--out: the folder name is empty; pass a folder for the run's files")
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunFolderError(f"--out {out}: is a file, not a folder; pass a folder for the run's files")
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, LOCK)
    fd = (_lock_flock if fcntl is not None else _lock_exclusive)(out, path)
    try:
        _settle_stash(out, say)
        held = describe_run(out)
        if held and not resume:
            if force:
                _move(held.files, out, os.path.join(out, STASH))
            elif held.before_first_checkpoint:
                _remove(out, held.files)
                say(f"{out} held {held}, which ended before its first checkpoint: starting afresh")
            else:
                raise RunFolderError(f"{out} holds {held}: pass --resume to continue it, --force to replace it, "
                                     f"or another --out")
        elif resume and os.path.exists(os.path.join(out, ONNX)):
            _remove(out, [ONNX])
            say(f"removed {os.path.join(out, ONNX)}: it was exported from the model this run continues "
                f"(gpudl export it again afterwards)")
        try:
            yield out
        finally:
            _settle_stash(out, say)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(fd)
        if created:     # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(out)
