"""The process layer holds on its own: what a program could do *after* escaping the language layer.

RestrictedPython stops all of these programs at compile time, so the tests simulate an escape. The sandbox is
started on a copy of its worker whose ``run_program`` executes programs marked ``# escaped`` as raw Python, in the
program's own process, after every process-level step the real worker takes (namespaces, dropped root, limits,
seccomp). Nothing else of the worker changes; a few tests also lift a layer (the process limit, the filter, the
kill after a reply) to show that the next one holds alone. ``reply(value)`` in the escaped program sends its
answer the way the child does, so a program can answer and go on running.

Each case is an attacker followed by a victim in the same one-worker sandbox (in the style of
``test_sandbox_fresh_state.py``), or an attacker whose traces the host looks for afterwards. Every attack
succeeded against the sandbox before issue 24 (77f5e1c), where the template only entered a network namespace
(whose ``close()`` did kill a lingering program that was its direct child: the grandchild survived it).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

import agentkit.tools.sandbox as sandbox_module
from agentkit.errors import AgentkitError
from agentkit.tools.sandbox import Sandbox, SandboxStartError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process layer")

WRAPPER = '''\
import ctypes, fcntl, importlib.util, os, stat, sys

ctypes.CDLL(None).prctl(15, {name!r}, 0, 0, 0)  # PR_SET_NAME: every sandbox process is findable by the test
spec = importlib.util.spec_from_file_location("_sandbox_worker", {worker!r})
worker = importlib.util.module_from_spec(spec)
sys.modules["_sandbox_worker"] = worker
spec.loader.exec_module(worker)
ordinary = worker.run_program
CFG = {{}}


def reply(value):
    """Answer now, the way the child does, and keep running."""
    line = worker._reply_line({{"kind": "ok", "value": value, "error_type": None, "error": None, "stdout": "",
                                "stdout_truncated": False}}, CFG)
    for fd in range(3, 16):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                os.write(fd, line)
                os.close(fd)
                return
        except OSError:
            pass


def escaped(source, cfg, state=None):
    if not source.startswith("# escaped\\n"):
        return ordinary(source, cfg, state)
    CFG.update(cfg)
    glb = {{"reply": reply}}
    try:
        exec(source, glb)
        kind, value, error_type, error = "ok", glb.get("answer"), None, None
    except BaseException as e:
        kind, value, error_type, error = "exception", None, type(e).__name__, str(e)
    return {{"kind": kind, "value": value, "error_type": error_type, "error": error, "stdout": "",
            "stdout_truncated": False}}


worker.run_program = escaped
if "nproc" in {lift!r}:  # simulate a process limit that did not hold either
    set_rlimits = worker._set_rlimits
    worker._set_rlimits = lambda limits: set_rlimits({{k: v for k, v in limits.items() if k != "RLIMIT_NPROC"}})
if "seccomp" in {lift!r}:  # ... or a system-call filter that did not
    worker._install_seccomp = lambda *args: None
if "namespaces" in {lift!r}:  # an OS that allows no namespace at all
    worker._unshare = lambda libc: 0
worker.main()
'''


def _escaping_sandbox(tmp_path: Path, monkeypatch, lift: tuple[str, ...] = (), **limits) -> tuple[Sandbox, str]:
    """A one-worker sandbox whose programs marked ``# escaped`` run as raw Python; and the name its processes
    carry (``/proc/PID/comm``)."""
    name = "akx" + secrets.token_hex(5)
    script = tmp_path / f"escaping_worker_{name}.py"
    worker = Path(sandbox_module.__file__).with_name("_sandbox_worker.py")
    script.write_text(WRAPPER.format(name=name.encode(), worker=str(worker), lift=list(lift)))
    script.chmod(0o644)
    monkeypatch.setattr(sandbox_module, "_WORKER_SCRIPT", script)
    return Sandbox(**{"workers": 1, "timeout": 5.0, **limits}), name


def _requires(sb: Sandbox, *layers: str) -> None:
    """Skip where the OS gave the sandbox no such layer (``Sandbox.layers``; docs/sandbox.md says what holds)."""
    missing = [name for name in layers if not sb.layers.get(name)]
    if missing:
        pytest.skip(f"this machine gives the sandbox no {', '.join(missing)}")


def _processes_named(name: str, zombies: bool = False) -> list[int]:
    """Live processes called ``name`` (or, with ``zombies``, the dead ones not reaped yet)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() != name:
                    continue
                dead = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
            except OSError:
                continue
            if dead == zombies:
                pids.append(int(entry))
    return pids


def _gone(name: str, within: float = 5.0) -> list[int]:
    """The processes called ``name`` still alive after waiting up to ``within`` seconds for them to go."""
    end = time.monotonic() + within
    while (left := _processes_named(name)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


def _kill_all(name: str) -> None:
    for pid in _processes_named(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


_PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def escaping(tmp_path, monkeypatch):
    """Makes escaping sandboxes. Meanwhile this process is a child subreaper: a process of theirs that outlives
    its parents is reparented here, not to the machine's PID 1 (which might end it), so the test sees it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    made = []

    def make(*lift: str, **limits) -> tuple[Sandbox, str]:
        sb, name = _escaping_sandbox(tmp_path, monkeypatch, lift, **limits)
        made.append((sb, name))
        return sb, name

    yield make
    for sb, name in made:
        sb.close()
        for left in (name, name[:-1] + "g", _lingering(name)):
            _kill_all(left)  # whatever survived (the sandbox before issue 24) must not outlive the test
            end = time.monotonic() + 5
            while _processes_named(left) and time.monotonic() < end:
                time.sleep(0.01)
            for pid in _processes_named(left, zombies=True):  # reparented here: reap them
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


# -- a program's process ends with its run ----------------------------------------------------------------------

# Leave the template's process group, stop dying with the template, answer, then keep killing every other
# process of this sandbox it can find (by name, through /proc) or reach (by pid, up to 300).
LINGER = """# escaped
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
me = os.getpid()
try:
    with open("/proc/self/comm") as f:
        name = f.read()  # what the other processes of this sandbox are called
except OSError:
    name = None
libc.prctl(15, NAME, 0, 0, 0)  # PR_SET_NAME: and this one, for the test to find it
libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG: none
try:
    os.setsid()
except OSError:
    pass
reply(1)
while True:
    try:
        others = [int(p) for p in os.listdir("/proc") if p.isdigit() and 0 < abs(int(p) - me) < 1000
                  and open(f"/proc/{p}/comm").read() == name]  # its neighbours only: cheap enough to loop
    except OSError:
        others = [p for p in range(2, 300) if p != me]
    for pid in others:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.001)
"""


def _lingering(name: str) -> str:
    return name[:-1] + "l"


def _linger(name: str) -> str:
    return LINGER.replace("NAME", repr(_lingering(name).encode()))


def test_a_program_that_answers_and_lingers_cannot_touch_later_programs(escaping):
    sb, name = escaping()
    _requires(sb, "pidns")
    attack = sb.run(_linger(name))
    assert attack.ok and attack.value == 1, attack.error
    later = [sb.run(f"answer = 6 * {i}") for i in range(10)]
    assert [(r.ok, r.value) for r in later] == [(True, 6 * i) for i in range(10)], [r.error for r in later]


def test_a_lingering_program_dies_with_its_template(escaping):
    sb, name = escaping()
    _requires(sb, "pidns")
    assert sb.run(_linger(name)).ok
    sb._slots[0].kill()  # the template's kill: its process group, as a restart does
    assert _gone(_lingering(name)) == [] and _gone(name) == []


@pytest.mark.parametrize("end", ["template-kill", "close"])
def test_the_pid_namespace_alone_ends_a_lingering_program(escaping, monkeypatch, end):
    # no kill once the reply is in, no filter (prctl and setsid work): only the template's PID namespace is left
    monkeypatch.setattr(sandbox_module._Template, "kill_child", lambda self, pid: None)
    sb, name = escaping("seccomp")
    _requires(sb, "pidns")
    assert sb.run(_linger(name)).ok
    assert sb.run("answer = 2").value == 2  # it can't reach a later program either
    assert _processes_named(_lingering(name))  # it outlived its run
    sb._slots[0].kill() if end == "template-kill" else sb.close()
    assert _gone(_lingering(name)) == [] and _gone(name) == []


# A grandchild that leaves the session and clears its death signal, as if the process limit had not held.
GRANDCHILD = """# escaped
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.closerange(3, ready_w)  # not the reply pipe: the run ends when the program's process does
    libc.prctl(15, NAME, 0, 0, 0)
    libc.prctl(1, 0, 0, 0, 0)
    os.setsid()
    os.write(ready_w, b"!")
    os.close(ready_w)
    while True:
        time.sleep(0.01)
os.read(ready_r, 1)  # the grandchild is on its own now
answer = "forked"
"""


def test_a_programs_descendants_die_with_its_run_and_with_close(escaping):
    sb, name = escaping("nproc", "seccomp")
    _requires(sb, "pidns")
    grandchild = name[:-1] + "g"
    r = sb.run(GRANDCHILD.replace("NAME", repr(grandchild.encode())))
    assert r.ok and r.value == "forked", r.error
    assert _gone(grandchild) == []
    sb.close()
    assert _gone(name) == []


# -- no host files, no host sockets, nothing left in /tmp or /dev/shm -------------------------------------------

READ = """# escaped
try:
    with open(PATH) as f:
        answer = f.read()
except OSError as e:
    answer = type(e).__name__
"""


@pytest.mark.parametrize("which", ["canary-in-tmp", "etc-passwd"])
def test_host_files_are_not_readable(escaping, which):
    sb, _name = escaping()
    _requires(sb, "mountns")
    if which == "canary-in-tmp":
        path, content = Path(f"/tmp/agentkit-canary-{secrets.token_hex(4)}"), "canary " + secrets.token_hex(8)
        path.write_text(content)
        path.chmod(0o644)
    else:
        path = Path("/etc/passwd")
        content = path.read_text() if path.exists() else None
    try:
        r = sb.run(READ.replace("PATH", repr(str(path))))
    finally:
        if which == "canary-in-tmp":
            path.unlink()
    assert r.ok, r.error
    assert r.value != content and r.value in ("FileNotFoundError", "PermissionError")


CONNECT = """# escaped
import socket
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(PATH)
    s.sendall(b"escaped")
    answer = "connected"
except OSError as e:
    answer = type(e).__name__
"""


def test_host_unix_sockets_are_unreachable(escaping):
    sb, _name = escaping()
    _requires(sb, "mountns")
    path = f"/tmp/agentkit-sock-{secrets.token_hex(4)}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        os.chmod(path, 0o777)
        server.listen(1)
        r = sb.run(CONNECT.replace("PATH", repr(path)))
    finally:
        server.close()
        os.unlink(path)
    assert r.ok, r.error
    assert r.value != "connected"


# Files, a directory, a FIFO and a symlink in /tmp and /dev/shm; the answer lists what was made.
LEAVE_FILES = """# escaped
import os
made = []
for d in ("/tmp", "/dev/shm"):
    for kind, make in (("file", lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o666))),
                       ("dir", lambda p: os.mkdir(p)), ("fifo", lambda p: os.mkfifo(p)),
                       ("link", lambda p: os.symlink("/", p))):
        path = f"{d}/TOKEN-{kind}"
        try:
            make(path)
            made.append(path)
        except OSError:
            pass
answer = made
"""
FIND_FILES = """# escaped
import os
answer = [f"{d}/TOKEN-{k}" for d in ("/tmp", "/dev/shm") for k in ("file", "dir", "fifo", "link")
          if os.path.lexists(f"{d}/TOKEN-{k}")]
"""


def test_nothing_written_to_tmp_or_dev_shm_reaches_a_later_program_or_the_host(escaping):
    sb, _name = escaping()
    _requires(sb, "mountns")
    token = f"agentkit-{secrets.token_hex(4)}"
    paths = [f"{d}/{token}-{k}" for d in ("/tmp", "/dev/shm") for k in ("file", "dir", "fifo", "link")]
    try:
        attack = sb.run(LEAVE_FILES.replace("TOKEN", token))
        victim = sb.run(FIND_FILES.replace("TOKEN", token))
        on_host = [p for p in paths if os.path.lexists(p)]
    finally:
        for p in paths:
            if os.path.isdir(p) and not os.path.islink(p):
                os.rmdir(p)
            elif os.path.lexists(p):
                os.unlink(p)
    assert attack.ok and victim.ok, (attack.error, victim.error)
    assert victim.value == [] and on_host == []


# SysV shared memory and a message queue under fixed keys, left behind for whoever comes next.
SYSV_LEAVE = """# escaped
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
shm = libc.shmget(SHM_KEY, 4096, 0o1666)  # IPC_CREAT | 0666
msg = libc.msgget(MSG_KEY, 0o1666)
answer = [shm >= 0, msg >= 0]
"""
SYSV_FIND = """# escaped
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
answer = [libc.shmget(SHM_KEY, 0, 0) >= 0, libc.msgget(MSG_KEY, 0) >= 0]
"""


def _sysv(source: str, shm_key: int, msg_key: int) -> str:
    return source.replace("SHM_KEY", str(shm_key)).replace("MSG_KEY", str(msg_key))


def test_sysv_ipc_objects_do_not_outlive_the_program(escaping):
    sb, _name = escaping()
    _requires(sb, "seccomp" if sb.layers["seccomp"] else "ipcns")
    libc = ctypes.CDLL(None, use_errno=True)
    shm_key, msg_key = 0x41000000 + secrets.randbelow(1 << 20), 0x42000000 + secrets.randbelow(1 << 20)
    try:
        attack = sb.run(_sysv(SYSV_LEAVE, shm_key, msg_key))
        victim = sb.run(_sysv(SYSV_FIND, shm_key, msg_key))
        on_host = [libc.shmget(shm_key, 0, 0), libc.msgget(msg_key, 0)]
    finally:
        shm, msg = libc.shmget(shm_key, 0, 0), libc.msgget(msg_key, 0)
        if shm >= 0:
            libc.shmctl(shm, 0, None)  # IPC_RMID
        if msg >= 0:
            libc.msgctl(msg, 0, None)
    assert attack.ok and victim.ok, (attack.error, victim.error)
    assert victim.value == [False, False] and on_host == [-1, -1]


def test_sysv_ipc_objects_die_with_the_program_without_seccomp(escaping):
    sb, _name = escaping("seccomp")
    _requires(sb, "ipcns")
    shm_key, msg_key = 0x43000000 + secrets.randbelow(1 << 20), 0x44000000 + secrets.randbelow(1 << 20)
    attack = sb.run(_sysv(SYSV_LEAVE, shm_key, msg_key))
    victim = sb.run(_sysv(SYSV_FIND, shm_key, msg_key))
    assert attack.ok and victim.ok, (attack.error, victim.error)
    assert attack.value == [True, True]  # the program made them, in an IPC namespace of its own ...
    assert victim.value == [False, False]  # ... which died with it


# -- what the process may still do --------------------------------------------------------------------------------

SYSCALLS = """# escaped
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
seen = {}
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    seen["socket"] = "allowed"
except OSError as e:
    seen["socket"] = type(e).__name__
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    seen["fork"] = "allowed"
except OSError as e:
    seen["fork"] = type(e).__name__
seen["unshare"] = "allowed" if libc.unshare(0x10000000) == 0 else os.strerror(ctypes.get_errno())  # a user namespace
answer = seen
"""


def test_the_program_cannot_make_sockets_processes_or_namespaces(escaping):
    sb, _name = escaping()
    r = sb.run(SYSCALLS)
    assert r.ok, r.error
    assert r.value["fork"] != "allowed"  # RLIMIT_NPROC=0, and the filter
    if sb.layers["seccomp"]:  # without it, a socket reaches nothing and a user namespace owns nothing
        assert r.value == {"socket": "PermissionError", "fork": "PermissionError", "unshare": "Operation not permitted"}


def test_without_namespaces_the_sandbox_degrades_and_says_so(escaping):
    sb, _name = escaping("namespaces", cpu_seconds=1)
    assert not any(sb.layers[k] for k in ("netns", "userns", "mountns", "ipcns", "pidns"))
    assert sb.run("answer = 6 * 7").value == 42
    r = sb.run("while True:\n    pass\n")  # SIGXCPU at the soft limit: the process is not PID 1 here
    assert r.kind == "timeout" and "CPU" in r.error
    r = sb.run(SYSCALLS)
    assert r.ok and r.value["fork"] != "allowed", r.value  # the limits still hold
    if sb.layers["seccomp"]:  # and the filter
        assert "allowed" not in r.value.values(), r.value


def test_a_template_that_cannot_start_is_one_line_agentkit_error(tmp_path, monkeypatch):
    script = tmp_path / "broken_worker.py"
    script.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(sandbox_module, "_WORKER_SCRIPT", script)
    with pytest.raises(AgentkitError) as caught:
        Sandbox(workers=1, startup_timeout=5.0)
    assert isinstance(caught.value, SandboxStartError)
    assert "\n" not in str(caught.value) and "sandbox template" in str(caught.value)


def test_layers_report_the_process_containment():
    with Sandbox(workers=1) as sb:
        layers = sb.layers
    assert set(layers) >= {"netns", "pidns", "mountns", "ipcns", "seccomp", "no_new_privs", "uid", "rlimits"}
    assert all(type(layers[k]) is bool for k in ("netns", "pidns", "mountns", "ipcns", "seccomp", "userns"))
    json.dumps(layers)
