"""The sandbox against the escapes generated code attempts: each is contained, and reported as what it was."""
import os
import textwrap
from pathlib import Path

import pytest

from jaxsuite.agents.sandbox import Limits, SandboxPool, dedicated_uids_available, run_python

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(not dedicated_uids_available(),
                                reason="a dedicated uid and mount namespace need root (documented fallback)")
QUICK = Limits(wall_seconds=3, cpu_seconds=3)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, limits=QUICK) as p:
        yield p


def uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if any(line.split()[1:2] == [str(uid)] for line in status.splitlines() if line.startswith("Uid:")):
                pids.append(int(entry))
    return pids


def test_output_exit_status_and_stdin(pool):
    r = pool.run("import sys; print(sys.stdin.read().upper()); sys.exit(3)", stdin="hello")
    assert (r.outcome, r.exit_code, r.stdout) == ("error", 3, "HELLO\n")
    r = pool.run("print(sum(range(10)))")
    assert r.ok and r.stdout == "45\n" and r.observation() == "45"
    r = pool.run("raise ValueError('bad input')")
    assert r.outcome == "error" and r.stderr.rstrip().endswith("ValueError: bad input")
    assert "ValueError: bad input" in r.observation()


def test_an_infinite_loop_is_stopped_by_the_wall_clock(pool):
    r = pool.run("while True: pass", limits=Limits(wall_seconds=1.5, cpu_seconds=30))
    assert r.outcome == "timeout" and 1.5 <= r.seconds < 10
    assert r.observation() == "Execution timed out."


def test_cpu_time_is_limited_separately(pool):
    r = pool.run("while True: pass", limits=Limits(wall_seconds=30, cpu_seconds=1))
    assert r.outcome == "timeout" and r.seconds < 10


def test_a_sleeping_program_with_children_is_killed_whole(pool):
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    r = pool.run(code, limits=Limits(wall_seconds=1))
    assert r.outcome == "timeout" and r.seconds < 10


def test_a_huge_allocation_is_a_memory_outcome(pool):
    r = pool.run("x = bytearray(16 << 30)", limits=Limits(memory_bytes=1 << 30))
    assert r.outcome == "memory" and "MemoryError" in r.stderr
    r = pool.run("import numpy as np; a = np.ones((1 << 17, 1 << 14))", limits=Limits(memory_bytes=1 << 30))
    assert r.outcome == "memory"


def test_output_is_capped(pool):
    r = pool.run("import sys\nfor _ in range(2000): sys.stdout.write('x' * 1000)",
                 limits=Limits(output_bytes=10_000))
    assert r.ok and r.truncated and len(r.stdout) == 10_000
    assert r.observation().endswith("[output truncated]")


def test_sockets_cannot_reach_anything(pool):
    code = textwrap.dedent("""
        import socket
        for host in [("1.1.1.1", 80), ("127.0.0.1", 22)]:
            try:
                socket.create_connection(host, timeout=2)
                print("connected", host)
            except OSError as e:
                print("refused", host, e.errno)
    """)
    r = pool.run(code)
    assert r.ok and "connected" not in r.stdout and r.stdout.count("refused") == 2
    assert r.isolation["network"] in ("network-namespace", "user+network-namespace", "python-socket-guard")


def test_the_parent_environment_is_not_inherited_nor_readable(pool, monkeypatch):
    monkeypatch.setenv("JAXSUITE_TEST_SECRET", "hunter2")
    code = textwrap.dedent(f"""
        import os
        print(sorted(os.environ))
        print("secret" if "hunter2" in str(os.environ) else "clean")
        try:
            print(open("/proc/{os.getpid()}/environ", "rb").read())
        except OSError as e:
            print("denied", type(e).__name__)
    """)
    r = pool.run(code)
    assert r.ok and "hunter2" not in r.stdout and "clean" in r.stdout
    assert "JAXSUITE_TEST_SECRET" not in r.stdout
    if dedicated_uids_available():
        assert "denied PermissionError" in r.stdout


@needs_root
def test_writes_outside_the_run_folder_fail_and_leave_nothing(pool, tmp_path):
    outside = tmp_path / "shared"
    outside.mkdir(mode=0o777)                   # even a folder anyone may write is out of reach
    outside.chmod(0o777)
    targets = [REPO / "escaped.txt", Path.home() / "escaped.txt", outside / "escaped.txt", Path("/etc/escaped")]
    code = textwrap.dedent(f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as e:
                print("blocked", path, type(e).__name__)
        open("inside.txt", "w").write("fine")
        print("inside ok", os.path.exists("inside.txt"))
    """)
    r = pool.run(code)
    assert r.ok, r.stderr
    assert "wrote" not in r.stdout and r.stdout.count("blocked") == len(targets)
    assert "inside ok True" in r.stdout
    assert not any(t.exists() for t in targets)


@needs_root
def test_a_fork_bomb_is_contained_and_nothing_survives_the_run():
    with SandboxPool(workers=1) as solo:
        r = solo.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                     limits=Limits(wall_seconds=2, processes=32))
        assert r.outcome == "timeout" and r.isolation["identity"] == "dedicated-uid"
        assert uid_processes(r.isolation["uid"]) == []          # every process the bomb made is gone
        r = solo.run("print('still works')")
        assert r.ok and r.stdout == "still works\n"


@needs_root
def test_nothing_leaks_from_one_run_into_the_next():
    with SandboxPool(workers=1) as solo:
        first = textwrap.dedent("""
            import os, subprocess
            for path in ["left.txt", "/tmp/left.txt", "/dev/shm/left.txt", os.path.expanduser("~/left.txt")]:
                open(path, "w").write("x")
            subprocess.Popen(["sleep", "60"], start_new_session=True)
            print(os.getcwd())
        """)
        r1 = solo.run(first)
        assert r1.ok, r1.stderr
        assert not Path(r1.stdout.strip()).exists()          # the run's folder is deleted
        second = textwrap.dedent("""
            import os
            print([p for p in ["left.txt", "/tmp/left.txt", "/dev/shm/left.txt"] if os.path.exists(p)])
            mine = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    uid = [l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:")][0].split()[1]
                except OSError:
                    continue
                if uid == str(os.getuid()) and int(pid) != os.getpid():
                    mine.append(pid)
            print("others", mine)
        """)
        r2 = solo.run(second)
        assert r2.ok and r2.stdout == "[]\nothers []\n", r2.stdout + r2.stderr
        assert not Path("/tmp/left.txt").exists()


def test_pools_never_share_a_uid():
    if not dedicated_uids_available():
        pytest.skip("dedicated uids need root")
    with SandboxPool(workers=2) as a, SandboxPool(workers=2) as b:
        uids = [a.run("import os; print(os.getuid())").stdout for _ in range(3)] + \
               [b.run("import os; print(os.getuid())").stdout for _ in range(3)]
        assert not set(uids[:3]) & set(uids[3:])


def test_many_runs_run_concurrently(tmp_path):
    with SandboxPool(workers=4) as p:
        results = p.map([f"import time; t = time.time(); time.sleep(0.5); print({i} * {i}, t, time.time())"
                         for i in range(8)], limits=Limits(wall_seconds=20))
    assert [r.stdout.split()[0] for r in results] == [str(i * i) for i in range(8)]
    spans = sorted(tuple(map(float, r.stdout.split()[1:])) for r in results)
    overlapping = sum(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert overlapping >= 3                              # runs overlapped in time: several were live at once


def test_files_and_import_paths_are_given_to_the_run(tmp_path):
    package = tmp_path / "pkgs"
    (package / "helper").mkdir(parents=True)
    (package / "helper" / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
    for path in [tmp_path, package, package / "helper", package / "helper" / "__init__.py"]:
        path.chmod(0o755)
    r = run_python("import helper; print(helper.double(int(open('data/n.txt').read())))",
                   files={"data/n.txt": "21"}, python_path=[str(package)], limits=QUICK)
    assert r.ok and r.stdout == "42\n", r.stderr
    with pytest.raises(ValueError, match="outside the run's folder"):
        run_python("pass", files={"../x.txt": "no"})
