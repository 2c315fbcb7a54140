"""A tiny launcher that runs one command and reports that command's own resource usage.

    python -I -S bench/launch.py RUSAGE.json -- cmd args...

Why not wait4 the engine directly from the harness: on Linux a process's ru_maxrss is seeded at
exec() with the high-water RSS of the memory image it replaced, i.e. of the process that forked
it. A child spawned by the harness (which may have held gigabytes while generating a lake, or
pandas and pyarrow in a test run) would report at least the harness's peak RSS. This launcher
is started by path (stdlib only, no site-packages: ~10 MiB), forks the command, reaps it with
os.wait4 and writes the command's wall time, CPU time and ru_maxrss as JSON; its exit code is
the command's.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    if sep != "--" or not cmd:
        print("usage: launch.py RUSAGE.json -- cmd args...", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(
            {
                "wall_s": wall,
                "user_s": usage.ru_utime,
                "sys_s": usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
                "exit_code": code,
            },
            fh,
        )
    os.replace(tmp, out)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
