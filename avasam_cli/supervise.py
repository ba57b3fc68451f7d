"""Every process `listen` starts, watched by one supervisor.

A child that dies is said on stderr (which child, how it ended, what that means for
the seller), started again after a back-off, and left down (said so) once it has died
CRASH_LOOP[0] times within CRASH_LOOP[1] seconds.  `/healthz` reads the states: a
child the listener's promises depend on that has been down for more than DOWN_GRACE
seconds makes it answer 503.

The child protocol uses only what Linux, macOS and Windows all have: `subprocess`
with a standard input pipe that carries the child's settings first (`hand_over`),
then nothing.  The child watches it (`avasam_cli.lifeline`) and stops within a second
of it closing, which it does when the parent is gone, even by `kill -9`.  On Linux
each child also gets the kernel's parent-death signal.  A child that starts processes
of its own (a tunnel tool) runs in a group of its own, signalled as a whole.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from avasam_cli import logs
from avasam_cli.defaults import restart_delay
from avasam_cli.lifeline import HANDED_SIZE, exit_when_stdin_closes
from avasam_cli.metrics.counts import here as metrics_here

CRASH_LOOP = (5, 60.0)  # this many deaths within this many seconds: left down
DOWN_GRACE = 10.0  # seconds a needed child may be down before /healthz answers 503
POLL = 0.2  # seconds between looks at the children
# `background` children (the delivery runner, the inspector, the printer) work through
# the outbox and the store at their own pace; under load the CPU goes to answering first
# (bench/listener.py's forward and page rows), and they catch up once it is quieter.
BACKGROUND_NICENESS = 10  # POSIX: added to the child's nice value (Windows: below normal)
Say = Callable[[str], None]


class Child(Protocol):
    """A started child process, as the supervisor sees it."""

    def poll(self) -> int | None: ...

    def stop(self, wait: float) -> bool: ...  # True: it had to be killed


def how_it_ended(code: int) -> str:
    """`exit code 1`, or `killed by SIGKILL` (a negative code is the signal, POSIX)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Spawned:
    """A child started with `subprocess`: its standard input is the lifeline."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        own_group: bool = False,
        stdout: Any = None,
        stderr: Any = None,
        in_our_group: bool = False,
        background: bool = False,
    ) -> None:
        # A group of its own: Ctrl-C at a terminal signals the whole foreground group, and
        # a child that took it would stop (and be reported dead) before the listener stops
        # its children in order.  `own_group`: what it starts is signalled with it too;
        # `in_our_group`: it stays in ours (the guard's tool, ended with the guard's group).
        group: dict[str, Any] = {}
        if sys.platform == "win32":
            flags = 0 if in_our_group else subprocess.CREATE_NEW_PROCESS_GROUP
            below = subprocess.BELOW_NORMAL_PRIORITY_CLASS if background else 0
            group["creationflags"] = flags | below
        elif not in_our_group:
            group["start_new_session"] = True
        self.own_group = own_group
        self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            list(argv), stdin=subprocess.PIPE, stdout=stdout, stderr=stderr,
            env=dict(env) if env is not None else None, **group,
        )  # fmt: skip
        if background and sys.platform != "win32":
            with contextlib.suppress(OSError):  # gone already: the supervisor will say so
                os.setpriority(os.PRIO_PROCESS, self.process.pid, BACKGROUND_NICENESS)
                # Linux shares the CPU between sessions first ("autogroups"), and the
                # child leads a session of its own: its session's share is lowered too.
                autogroup = Path(f"/proc/{self.process.pid}/autogroup")
                if autogroup.exists():
                    autogroup.write_text(f"{BACKGROUND_NICENESS}\n")

    @property
    def pid(self) -> int:
        return self.process.pid

    def hand_over(self, payload: bytes) -> None:
        """Write the child's settings to its lifeline, before anything else: a pipe only
        we hold, so it may carry secrets (a database password), unlike argv."""
        assert self.process.stdin is not None
        self.process.stdin.write(HANDED_SIZE.pack(len(payload)) + payload)
        self.process.stdin.flush()

    def poll(self) -> int | None:
        return self.process.poll()

    def signal_all(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) to the child, and to its whole group when it has one."""
        if self.process.poll() is not None and not self.own_group:
            return
        if self.own_group and sys.platform != "win32":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            return
        with contextlib.suppress(ProcessLookupError):
            if kill:
                self.process.kill()
            else:
                self.process.terminate()

    def stop(self, wait: float) -> bool:
        """Close its lifeline and ask it to stop; after `wait` seconds, kill it.  True
        when it had to be killed."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self.signal_all()
        killed = False
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.signal_all(kill=True)
            self.process.wait()
            killed = True
        if self.own_group:  # what it started and left behind goes too
            self.signal_all(kill=True)
        return killed


@dataclass
class Watched:
    """One supervised child: how to start it, what its death means, and its record."""

    name: str
    start: Callable[[], Child]
    meaning: str  # what the seller loses while it is down
    needed: bool  # the listener's promises depend on it: /healthz says so
    stop_wait: float
    on_restart: Callable[[], None] | None = None
    killed_note: str | None = None  # said when it had to be killed at the stop
    process: Child | None = None
    state: str = "starting"  # running, restarting, down (given up), stopped
    restarts: int = 0
    down_since: float | None = None
    restart_at: float | None = None
    deaths: collections.deque[float] = field(default_factory=collections.deque)


class Supervisor:
    """Starts, watches, restarts and stops the children of one `listen`."""

    def __init__(
        self,
        say: Say,
        clock: Callable[[], float] = time.monotonic,
        publish: Path | None = None,
        on_down: Callable[[str, str], object] | None = None,
    ) -> None:
        """`publish`: a file the states are written to whenever they change, for the
        other receiver processes' /healthz (`Published`); `on_down(name, what)` hears of
        a child left down (an alert)."""
        self.say = say
        self.on_down = on_down
        self.counts = metrics_here()
        self.clock = clock
        self.publish = publish
        self._published = ""
        self.children: list[Watched] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._unwatched = threading.Event()
        self._thread: threading.Thread | None = None

    def start(
        self,
        name: str,
        start: Callable[[], Child],
        meaning: str,
        needed: bool = False,
        stop_wait: float = 5.0,
        on_restart: Callable[[], None] | None = None,
        killed_note: str | None = None,
        started: Child | None = None,
    ) -> Watched:
        """Start a child now (an error starting it the first time is the caller's), or
        take the one `started` already, and watch it from then on; `start` makes the
        restarts.  Children stop in the order they were started."""
        child = Watched(name, start, meaning, needed, stop_wait, on_restart, killed_note)
        child.process = started if started is not None else start()
        child.state = "running"
        with self._lock:
            self.children.append(child)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="avasam-supervisor")
            self._thread.daemon = True
            self._thread.start()
        return child

    def _watch(self) -> None:
        while not self._stopping.wait(POLL) and not self._unwatched.is_set():
            self.check()
            if self.publish is not None:
                self._write_states(self.publish)

    def _write_states(self, path: Path) -> None:
        """The states, with wall-clock times (other processes read them), when changed."""
        offset = time.time() - self.clock()
        with self._lock:
            records = {
                child.name: {
                    "state": child.state, "restarts": child.restarts, "needed": child.needed,
                    "meaning": child.meaning,
                    "down_since": None if child.down_since is None else child.down_since + offset,
                }
                for child in self.children
            }  # fmt: skip
        text = json.dumps(records, sort_keys=True)
        if text == self._published:
            return
        with contextlib.suppress(OSError):  # /healthz of the others is all it costs
            written = path.with_suffix(".new")
            written.write_text(text, encoding="utf-8")
            os.replace(written, path)  # whole: a reader never sees half of it
            self._published = text

    def check(self) -> None:
        """One look at every child: a death is said, a restart that is due is made."""
        with self._lock:
            children = list(self.children)
        for child in children:
            self._look_at(child)

    def stop_watching(self) -> None:
        """No more looks from the thread (`check` still works): for tests."""
        self._unwatched.set()
        if self._thread is not None:
            self._thread.join(5)

    def _look_at(self, child: Watched) -> None:
        if self._stopping.is_set():
            return
        with self._lock:  # retire() may come from another thread
            now = self.clock()
            if child.state == "running" and child.process is not None:
                code = child.process.poll()
                if code is not None:
                    self._died(child, code, now)
                return
            due = child.state == "restarting" and now >= (child.restart_at or now)
        if due:
            self._restart(child)

    def _died(self, child: Watched, code: int, now: float) -> None:
        if child.process is not None:  # its lifeline closed, what it left in its group ended
            child.process.stop(0)
        child.down_since = now
        child.deaths.append(now)
        while child.deaths and now - child.deaths[0] > CRASH_LOOP[1]:
            child.deaths.popleft()
        ended = how_it_ended(code)
        if len(child.deaths) >= CRASH_LOOP[0]:
            child.state = "down"
            said = (
                f"the {child.name} stopped ({ended}), its {len(child.deaths)}th stop "
                f"within {CRASH_LOOP[1]:g} s: it is left down, {child.meaning}"
            )
            self.say(
                logs.said(
                    f"Error: {said}. Stop the listener, look at the messages above, "
                    "and start it again.",
                    "child_down",
                    child=child.name,
                    exit=code,
                )
            )
            if self.on_down is not None:
                self.on_down(child.name, said)
            return
        delay = restart_delay(len(child.deaths) - 1)
        child.state, child.restart_at = "restarting", now + delay
        self.say(logs.said(f"Error: the {child.name} stopped ({ended}): {child.meaning} until it "
                           f"is back. Restarting it in {delay:g} s.", "child_died",
                           child=child.name, exit=code, restart_in=delay))  # fmt: skip

    def _restart(self, child: Watched) -> None:
        try:
            process = child.start()
        except Exception as error:  # an OSError, a busy port: try again later
            with self._lock:
                self._died(child, 1, self.clock())
            self.say(f"  ({child.name}: {error})")
            return
        with self._lock:
            if child.state != "restarting":  # retired meanwhile
                process.stop(0)
                return
            child.process = process
            child.restarts += 1
            if self.counts is not None:
                self.counts.count("avasam_child_restarts", (child.name,))
            child.state, child.down_since, child.restart_at = "running", None, None
        self.say(logs.said(f"The {child.name} is back (restart {child.restarts}).", "child_back",
                           child=child.name, restarts=child.restarts))  # fmt: skip
        if child.on_restart is not None:
            child.on_restart()

    def _records(self) -> list[Record]:
        with self._lock:
            return [
                Record(child.name, child.state, child.restarts, child.needed, child.meaning,
                       child.down_since)
                for child in self.children
            ]  # fmt: skip

    def states(self) -> dict[str, dict[str, Any]]:
        """Each child's state and restarts, for /healthz."""
        return states_of(self._records(), self.clock())

    def trouble(self) -> str | None:
        """Why the listener cannot keep its promises now: a needed child down for more
        than DOWN_GRACE seconds (or left down).  None: all well."""
        return trouble_of(self._records(), self.clock())

    def retire(self, child: Watched) -> None:
        """No more looks at `child`: its owner is stopping it (the store writer, which
        must finish its commits before it goes)."""
        with self._lock:
            child.state = "stopped"

    def restart_count(self) -> int:
        with self._lock:
            return sum(child.restarts for child in self.children)

    def stop(self) -> None:
        """Stop every child, in the order they were started (none is restarted now)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            children = list(self.children)
        for child in children:
            if child.state == "stopped":  # retired: its owner stopped it
                continue
            child.state = "stopped"
            killed = child.process is not None and child.process.stop(child.stop_wait)
            if killed and child.killed_note is not None:
                self.say(child.killed_note)
        if self.publish is not None:
            self.publish.unlink(missing_ok=True)


@dataclass(frozen=True)
class Record:
    """One child's state, as /healthz tells it (`down_since` on the reader's clock)."""

    name: str
    state: str
    restarts: int
    needed: bool
    meaning: str
    down_since: float | None


def states_of(records: Iterable[Record], now: float) -> dict[str, dict[str, Any]]:
    return {
        record.name: {
            "state": record.state,
            "restarts": record.restarts,
            **(
                {"down_seconds": round(now - record.down_since, 1)}
                if record.down_since is not None
                else {}
            ),
        }
        for record in records
    }


def trouble_of(records: Iterable[Record], now: float) -> str | None:
    for record in records:
        if not record.needed or record.down_since is None or record.state == "stopped":
            continue
        if record.state == "down" or now - record.down_since > DOWN_GRACE:
            return f"the {record.name} is down: {record.meaning}"
    return None


class Published:
    """The states another process's supervisor publishes (an extra receiver process
    reads the listener's), with the same `states` and `trouble` as a Supervisor;
    `leave_out`: names this process answers for itself (its own store writer)."""

    def __init__(self, path: Path, leave_out: Iterable[str] = ()) -> None:
        self.path = path
        self.leave_out = frozenset(leave_out)

    def _records(self) -> list[Record]:
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not written yet, or the listener is stopping
            return []
        return [
            Record(name, value["state"], value["restarts"], value["needed"], value["meaning"],
                   value["down_since"])
            for name, value in found.items()
            if name not in self.leave_out
        ]  # fmt: skip

    def states(self) -> dict[str, dict[str, Any]]:
        return states_of(self._records(), time.time())

    def trouble(self) -> str | None:
        return trouble_of(self._records(), time.time())


GUARD_STOP_WAIT = 5.0


def guard_main(argv: Sequence[str]) -> int:
    """`python -m avasam_cli.supervise TOOL [ARGS...]`: run a tool that may start
    processes of its own (a tunnel tool) and end all of them when we are asked to stop
    or our parent is gone (its stdin lifeline closed, or on Linux the parent-death
    signal): no grandchild outlives the listener.

    The listener starts us in a process group of our own, and the tool stays in it:
    whoever ends that group (we, or the listener when we die, even by SIGKILL) ends the
    tool and everything it started."""
    done = threading.Event()  # the lifeline closed (set by its thread)
    # SIGTERM only notes it: a handler that took a lock (Event.set does) while this
    # thread held it inside Event.wait would wait for itself forever.
    terminated: list[int] = []
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the listener stops us, in turn
    signal.signal(signal.SIGTERM, lambda signum, _: terminated.append(signum))
    exit_when_stdin_closes(done.set)
    try:
        tool = Spawned(argv, in_our_group=True)
    except OSError as error:
        print(f"cannot start {argv[0]}: {error.strerror or error}", flush=True)
        return 127
    while not terminated and not done.wait(POLL):
        if tool.poll() is not None:
            break
    if sys.platform == "win32":
        tool.stop(GUARD_STOP_WAIT)
    else:
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGTERM)  # the tool and what it started (us: noted only)
        with contextlib.suppress(subprocess.TimeoutExpired):
            tool.process.wait(GUARD_STOP_WAIT)
        if os.getppid() != parent:  # nobody is left to end the group after us
            os.killpg(0, signal.SIGKILL)
        tool.stop(0)
    code = tool.poll() or 0
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(guard_main(sys.argv[1:]))
