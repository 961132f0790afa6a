"""Lab cloud benchmark: HA routers end to end (issue 9's performance table).

    .venv/bin/python -m bench.cloud [--routers 1000] [--per-project 1] [--trials 5]
                                    [--idle-seconds 30] [--build-minutes 45]
                                    [--out docs/BENCHMARKS.md]

Everything goes through the API an operator uses, against hanet.lab.cloud's clouds:

- ``--trials`` small clouds (3 network nodes, 1 compute node), one after the other: one HA
  router, vm1 pinging upstream every 10 ms; the router's active node is crashed (kill -9 of
  everything on it and its links cut, at a random point of the advert cycle);
- a big cloud (4 network nodes, 1 compute node): ``--routers`` HA routers, each with a
  gateway on 'public' and one interface on a tenant network of its own, one router to a
  project (a project's HA routers share one HA network: one VRRP segment, where every
  advert reaches every router), made at once by 8 API clients while the fourth node is off
  (so they all go to net1-net3); then the daemons' memory and idle CPU, an agent restart
  under vm1's pings, every agent at 1 s and back, the spare node on, and a crash of the node
  that is master of most routers.

The agents get ``--build-minutes`` to run every router; past that the run stops and records
how far they got. ``--routers 50`` is a quick run for development; the recorded run is the
default 1,000. Each cloud is removed at the end, whatever happens, after its logs and status
files are copied to ``build/bench-cloud-logs/PREFIX``; the raw figures are in
``build/bench-cloud.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cloud_runs import big_cloud, small_cloud
from bench.cloud_steps import Results, Spread, log
from bench.cloud_usage import NodeUsage
from bench.failover import write_section
from hanet.lab.lab import clean_up_on_sigterm

BEGIN, END = "<!-- bench:cloud:begin -->", "<!-- bench:cloud:end -->"
LOGS = Path("build/bench-cloud-logs")
RAW = Path("build/bench-cloud.json")


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _outage_row(f: dict[str, Any], errors: dict[str, str]) -> str:
    crashes = f.get("crashes")
    if not crashes:
        return f"not measured ({errors.get('small cloud', 'the small cloud did not run')})"
    ms = [c["outage_ms"] for c in crashes]
    took = [c["took_over_s"] * 1000 for c in crashes if c.get("took_over_s") is not None]
    text = f"**{statistics.median(ms):.0f} ms** ({min(ms)}-{max(ms)}; {', '.join(map(str, ms))})"
    if took:
        text += f"; VRRP take-over {min(took):.0f}-{max(took):.0f} ms after the crash"
    moved = sum(1 for c in crashes if c.get("master_when_dead") not in (None, c["new_master"]))
    if moved:
        text += (
            f"; in {moved} of {len(crashes)} the router moved again before the server "
            "declared the node dead"
        )
    held = sum(1 for c in crashes if c.get("held_before"))
    if held:
        text += f"; in {held} a backup was held in standby by the server when the node crashed"
    return text


def _usage_rows(label: str, usages: list[NodeUsage] | None) -> list[str]:
    if not usages:
        return []
    return [
        f"| {u.node} | {label} | {u.agent_mb:.1f} + {u.vrrpd_mb:.1f} = {u.rss_mb:.1f} MB "
        f"| {u.agent_cpu:.1f} + {u.vrrpd_cpu:.1f} = {u.cpu:.1f} % "
        f"| {u.proxies} ({u.proxies_mb:.0f} MB) |"
        for u in usages
    ]


def _spread(value: Spread | None, unit: str = "s") -> str:
    return "none seen" if value is None else value.text(unit)


def _load(f: dict[str, Any]) -> str:
    return " and ".join(f"{value:.1f}" for value in f.get("load", [])) or "not read"


def _missing(results: Results) -> str:
    failed = next(iter(results.errors), None)
    return f"not measured ({failed} failed, below)" if failed else "not measured"


def _sample(value: list[int | None] | None) -> str:
    if not value:
        return "?"
    made, running = value
    return f"{made} / {'no answer' if running is None else running}"


def _progress(samples: list[dict[str, Any]], nodes: list[str]) -> list[str]:
    """Table rows: at most about ten samples, evenly spread, and the last."""
    every = max(1, len(samples) // 10)
    picked = samples[every - 1 :: every]
    if samples and (not picked or picked[-1] is not samples[-1]):
        picked.append(samples[-1])
    return [
        f"| {s['at_s'] / 60:.0f} min | " + " | ".join(_sample(s.get(n)) for n in nodes) + " |"
        for s in picked
    ]


def _built_at(args: argparse.Namespace) -> str:
    if args.build_advert_int == 0.1:
        return ""
    return (f"The {args.routers} routers were built at {args.build_advert_int:g} s; the idle "
            "figures at 1 s and the agent restart were taken then, before every agent went "
            "to 0.1 s for the idle figures at 0.1 s and the crash. ")  # fmt: skip


def render(results: Results, args: argparse.Namespace, command: str) -> str:
    f, n = results.figures, results.routers
    missing = _missing(results)
    crash = f.get("crash") or {}
    fast, slow = f.get("usage_fast"), f.get("usage_slow")
    restart = f.get("restart") or {}
    sharing = (
        "one router to a project (so each has an HA network, one VRRP segment, of its own)"
        if args.per_project == 1
        else f"{args.per_project} routers to a project (and to its HA network)"
    )
    lines = [
        BEGIN,
        "## Lab cloud: HA routers end to end (issue 9)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores, Linux {platform.release()}; the whole cloud (hanet-server, "
        "the nodes' vrrpd and hanet-agent, the VMs) shares them. VRRPv3 at 0.1 s (the lab "
        "cloud's default) unless said otherwise; agent_down_time 5 s. "
        f"{_built_at(args)}Load average of the "
        f"machine (1 min) at the start and end of the run: {_load(f)}.",
        "",
        "Routers: HA, a gateway on `public` and one interface on a tenant network and /24 of "
        f"their own, {sharing}; made through the API by 8 clients at once (the networks and "
        "subnets first). "
        "vm1 pings upstream (203.0.113.1) every 10 ms through a router of its own.",
        "",
        "| what | setup | measured | target |",
        "|---|---|---|---|",
        f"| client outage after the active network node crashes, median of {args.trials} "
        "| 1 router, 3 network nodes; crash = kill -9 of all on the node and its links cut, "
        "at a random point of the advert cycle; a fresh cloud for each; vm1 probed until the "
        f"server has declared the node's agent dead | {_outage_row(f, results.errors)} "
        "| ≤ 400 ms |",
    ]
    setup = f"{n} routers on net1-net3"
    if crash:
        probe = (
            f"{crash['outage_ms']} ms"
            if crash["probe_on_node"]
            else "its router was not master there"
        )
        late = f"; {crash['not_taken_over']} not within 60 s" if crash["not_taken_over"] else ""
        unprotected = (
            f" ({crash['not_protected']} not within 600 s)" if crash["not_protected"] else ""
        )
        lines += [
            f"| every router on the crashed node active elsewhere (vrrpd's master_since) "
            f"| {setup}; {crash['node']} crashed, master of {crash['mastered']} "
            f"| {_spread(crash['took_over'], 'ms')}{late}; vm1's outage: {probe} | ≤ 1 s |",
            "| those routers re-protected on a spare node (3 live places in l3-agents; the "
            f"spare's agent runs them all) | same, plus net4 | API: "
            f"{_spread(crash['three_places'])}{unprotected}; net4 running all {n + 1}: "
            f"{_seconds(crash['spare_ready_s'])} after the crash | ≤ 30 s |",
        ]
    else:
        lines += [
            f"| every router on the crashed node active elsewhere | {setup} | {missing} | ≤ 1 s |",
            f"| those routers re-protected on a spare node | same, plus net4 | {missing} "
            "| ≤ 30 s |",
        ]
    if fast or slow:
        worst = max(fast or slow, key=lambda u: u.rss_mb)
        rss = (
            f"largest: {worst.node} {worst.agent_mb:.1f} + {worst.vrrpd_mb:.1f} = "
            f"**{worst.rss_mb:.1f} MB** (per node below)"
        )
        cpu_fast = ", ".join(f"{u.cpu:.1f} %" for u in fast) if fast else missing
        cpu_slow = ", ".join(f"{u.cpu:.1f} %" for u in slow) if slow else missing
        cpu = f"at 0.1 s: {cpu_fast}; at 1 s: {cpu_slow} (of one core; net1, net2, net3)"
    else:
        building = f.get("usage_building")
        rss = cpu = missing
        if building:
            rss += "; while building: " + ", ".join(
                f"{u.node} {u.agent_mb:.1f} + {u.vrrpd_mb:.1f} = {u.rss_mb:.1f} MB"
                for u in building
            )
    lines += [
        f"| agent + vrrpd RSS per network node | {n} routers | {rss} | ≤ 150 MB |",
        f"| agent + vrrpd CPU per network node, idle {args.idle_seconds:g} s | {n} routers, "
        f"v3 at 1 s and at 0.1 s | {cpu} | recorded |",
    ]
    if restart:
        lines.append(
            f"| agent restart | {n + 1} routers at {restart.get('advert_int', 0.1):g} s; "
            f"{restart['node']}'s agent (vm1's router active there) | "
            f"**{restart['lost']} lost** of {restart['sent']} probes; "
            f"running all routers again (status file and vrrpd) {restart['adopted_s']:.1f} s "
            "after the SIGTERM | 0 lost; time recorded |"
        )
    else:
        lines.append(f"| agent restart | {n} routers | {missing} | 0 lost; time recorded |")
    for key, label in (
        ("create_one_empty", "one router, empty cloud"),
        ("create_one_loaded", f"one router beside {n}"),
    ):
        one = f.get(key)
        lines.append(_create_row(label, one) if one else _create_row(label, None, missing))
    lines.append(_many_row(f, n, missing))
    if fast or slow:
        lines += [
            "",
            "Per network node (agent + vrrpd; haproxy is the metadata proxy of each router "
            "the node is master of, counted apart):",
            "",
            "| node | advert_int | RSS agent + vrrpd | CPU agent + vrrpd | haproxy (RSS) |",
            "|---|---|---|---|---|",
            *_usage_rows("0.1 s", fast),
            *_usage_rows("1 s", slow),
        ]
    if f.get("build_progress") and not f.get("create_built_s"):
        lines += [
            "",
            "How far the build got: router namespaces made / instances running (MASTER or "
            "BACKUP) in the node's vrrpd ('no answer': its status request was not answered "
            "within 20 s), by minutes after the first POST:",
            "",
            "| after | net1 | net2 | net3 |",
            "|---|---|---|---|",
            *_progress(f["build_progress"], ["net1", "net2", "net3"]),
        ]
    if results.errors:
        lines += ["", "Failed steps:", ""]
        lines += [f"- {name}: `{error}`" for name, error in results.errors.items()]
    lines += ["", *results.notes] if results.notes else []
    lines.append(END)
    return "\n".join(lines)


def _many_row(f: dict[str, Any], n: int, missing: str) -> str:
    what = f"| {n} routers at once: from the first POST to all active in the API | 3 network nodes"
    if f.get("create_requests_s") is None:
        return f"{what} | {missing} | recorded |"
    text = f"requests {f['create_requests_s']:.1f} s"
    if "create_active" in f:
        text += f"; active in the API (±5 s): {_spread(f['create_active'])}"
        if f.get("create_active_missing"):
            text += f" (**{f['create_active_missing']} never**)"
    built = f.get("create_built_s") or {}
    if built:
        text += "; every node running all: " + ", ".join(
            f"{node} {t:.1f} s" for node, t in sorted(built.items())
        )
    text += f" (networks and subnets before: {f['subnets_s']:.1f} s)"
    return f"{what} | {text} | recorded |"


def _create_row(setup: str, one: dict[str, Any] | None, missing: str = "") -> str:
    what = f"| from `router create` (+ add interface) to vm1's first reply through it | {setup}"
    if one is None:
        return f"{what} | {missing} | recorded |"
    return (
        f"{what} | **{one['forwarding_s']:.2f} s** (the two requests {one['requests_s']:.2f} s; "
        f"active in the API {_seconds(one.get('active_api_s'))}) | recorded |"
    )


def _json(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, default=1000)
    parser.add_argument(
        "--per-project",
        type=int,
        default=1,
        help="routers to a project; a project's routers share one HA network (VRRP segment)",
    )
    parser.add_argument("--trials", type=int, default=5, help="crashes of the small cloud")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument(
        "--build-minutes",
        type=float,
        default=45,
        help="how long the agents may take to run every router before the run stops",
    )
    parser.add_argument(
        "--build-advert-int",
        type=float,
        choices=(0.1, 1.0),
        default=0.1,
        help="the big cloud's advert interval while it is built (then 0.1 s for the crash)",
    )
    parser.add_argument("--skip-small", action="store_true", help="the big cloud only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.cloud needs root (the lab cloud's namespaces)")
    if args.routers < 1 or args.per_project < 1:
        sys.exit("--routers and --per-project: at least 1")
    clean_up_on_sigterm()
    results = Results(args.routers)
    results.figures["load"] = [os.getloadavg()[0]]
    started = time.monotonic()
    stopped: SystemExit | None = None
    try:
        if not args.skip_small:
            try:
                small_cloud(results, args.trials, LOGS)
            except Exception as exc:
                results.errors["small cloud"] = f"{type(exc).__name__}: {exc}"
                log(f"small cloud failed: {exc}")
        try:
            big_cloud(
                results,
                args.routers,
                args.per_project,
                args.idle_seconds,
                args.build_minutes,
                LOGS,
                args.build_advert_int,
            )
        except Exception as exc:
            log(f"big cloud stopped: {exc}")
    except SystemExit as stop:  # SIGTERM (clean_up_on_sigterm): the clouds are down already
        results.errors["run"] = f"stopped by a signal (exit status {stop.code})"
        stopped = stop
    finally:
        results.figures["load"].append(os.getloadavg()[0])
        RAW.parent.mkdir(parents=True, exist_ok=True)
        RAW.write_text(json.dumps(asdict(results), default=_json, indent=1))
        log(f"raw figures in {RAW}; {time.monotonic() - started:.0f} s in all")
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else " ".join(["python -m bench.cloud", *sys.argv[1:]])
    )
    section = render(results, args, command)
    print(section)
    if args.out:  # also for a stopped run: what it measured until then is kept
        write_section(args.out, section, BEGIN, END)
    if stopped is not None:
        raise stopped
    if results.errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
