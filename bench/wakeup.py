"""The price of waking up, which sets hanet's CPU floor at one instance.

    .venv/bin/python -m bench.wakeup [--wakeups 50]

A backup of one instance does nothing but wake ten times a second for an advert. This
measures what one idle wake-up from a 100 ms epoll_wait costs in CPU time (the scheduler's
nanosecond count): for this Python interpreter, and for a C program doing the same,
compiled with gcc when it is there. Nothing else runs in either loop.
"""

from __future__ import annotations

import argparse
import select
import shutil
import subprocess
import tempfile
from pathlib import Path

C_PROGRAM = r"""
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/epoll.h>
static long cpu_ns(void) {
    char text[256]; long value = 0;
    int fd = open("/proc/self/schedstat", O_RDONLY);
    int n = read(fd, text, sizeof text - 1); close(fd);
    text[n > 0 ? n : 0] = 0; sscanf(text, "%ld", &value); return value;
}
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]), ep = epoll_create1(0); struct epoll_event event;
    long start = cpu_ns();
    for (int i = 0; i < rounds; i++) epoll_wait(ep, &event, 1, 100);
    printf("%f\n", (cpu_ns() - start) / (double)rounds / 1000.0);
    return 0;
}
"""


def cpu_ns() -> int:
    return int(Path("/proc/self/schedstat").read_text().split()[0])


def python_wakeup_us(rounds: int) -> float:
    poller = select.epoll()
    start = cpu_ns()
    for _ in range(rounds):
        poller.poll(0.1)
    return (cpu_ns() - start) / rounds / 1000


def c_wakeup_us(rounds: int) -> float | None:
    if shutil.which("gcc") is None:
        return None
    with tempfile.TemporaryDirectory() as work:
        source, binary = Path(work) / "wake.c", Path(work) / "wake"
        source.write_text("#include <stdlib.h>\n" + C_PROGRAM)
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
        return float(
            subprocess.run(
                [str(binary), str(rounds)], check=True, capture_output=True, text=True
            ).stdout
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakeups", type=int, default=50)
    args = parser.parse_args()
    python = python_wakeup_us(args.wakeups)
    c = c_wakeup_us(args.wakeups)
    print(
        f"one idle wake-up: Python {python:.0f} us"
        + (f", C {c:.0f} us, ratio {python / c:.2f}" if c else ", C: no gcc")
    )


if __name__ == "__main__":
    main()
