"""bench/results.md from the measured results (no figure is typed in here)."""

from __future__ import annotations

from typing import Any

from common import fmt_ratio, ms, table


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


def _spread(s: dict[str, float]) -> str:
    return f"{ms(s['median'], 0)} ({ms(s['q1'], 0)}-{ms(s['q3'], 0)}; {ms(s['min'], 0)}-{ms(s['max'], 0)})"


def headline(results: dict[str, Any]) -> list[str]:
    rows = results["calls"]["rows"]
    latency = results["calls"]["latency"]
    over = [r for r in rows if r["ours_excess"] > 0]
    naive_over = [r for r in rows if r["naive_excess"] > 0]
    worst = max(rows, key=lambda r: r["naive_excess"])
    lines = [
        f"- **Calls:** ours made {sum(r['ours_excess'] for r in rows if r['ours_excess'] > 0)} "
        f"UpdateMembership calls above the lower bound over {len(rows)} operations "
        f"({len(over)} rows above it); the naive handler exceeded it on {len(naive_over)} rows, "
        f"by up to {worst['naive_excess']} calls ({worst['case']}: {worst['naive']['updates']} vs "
        f"{worst['bound']}). Ours also reads once (GetMembership) per Create/Update.",
    ]
    walled = [r for r in rows if "wall" in r]
    if walled:
        big = max(walled, key=lambda r: r["adds"] + r["removes"])
        ratios = [
            r["wall"]["ours_over_naive"]
            for r in walled
            if r["wall"]["ours_over_naive"] and r["bound"]
        ]
        retain = next((r for r in walled if "Retain" in r["case"]), None)
        text = (
            f"- **Wall time at {latency * 1000:.0f} ms/call:** ours/naive from {min(ratios):.2f}x to "
            f"{max(ratios):.2f}x on rows that change something; {big['case']}: ours "
            f"{big['wall']['ours']:.2f} s, naive {big['wall']['naive']:.2f} s, bound "
            f"{big['wall']['bound']:.2f} s."
        )
        if retain:
            text += (
                f" Delete with Retain: ours {ms(retain['wall']['ours'])} ms (no security-ir call)."
            )
        lines.append(text)
    cold = results["coldstart"]
    dev = cold["dev"]
    text = (
        f"- **Cold start (dev venv):** ours {ms(dev['ours']['median'], 0)} ms vs bare "
        f"{ms(dev['bare']['median'], 0)} ms = **{dev['ratio_of_medians']:.2f}x** (goal ≤ 1.3x)"
    )
    if "artifact" in cold:
        art = cold["artifact"]
        text += (
            f"; as on Lambda (artifact, no bytecode cache): {ms(art['ours']['median'], 0)} vs "
            f"{ms(art['bare']['median'], 0)} ms = **{art['ratio_of_medians']:.2f}x**"
        )
    steps = {s["step"]: s["median"] for s in cold["replay"]["steps"]}
    layer = next((v for k, v in steps.items() if k.startswith("DynamoDBPersistenceLayer")), None)
    alt = next((v for k, v in steps.items() if k.startswith("ALT ")), None)
    if layer is not None and alt is not None:
        saved = layer - alt
        projected = (dev["ours"]["median"] - saved) / dev["bare"]["median"]
        text += (
            f". Largest extra step: `DynamoDBPersistenceLayer()` {ms(layer, 0)} ms (its own boto3 Session); "
            f"a DynamoDB client from boto3's default session took {ms(alt, 0)} ms, so passing one in "
            f"(`boto3_client=`) would save ~{ms(saved, 0)} ms, about {projected:.2f}x (projection from "
            "this run's replay)."
        )
    lines.append(text)
    warm = results["warm"]
    lines.append(
        f"- **Warm overhead (latency 0, idempotency on moto):** ours {ms(warm['ours']['median'])} ms vs "
        f"bare get+update {ms(warm['bare']['median'])} ms per event "
        f"(+{ms(warm['ours_minus_bare'])} ms, {warm['ours_over_bare']:.2f}x), of which DynamoDB "
        f"{ms(warm['ours_breakdown']['dynamodb_calls'])} ms and the answer's PUT "
        f"{ms(warm['ours_breakdown']['answer_put'])} ms."
    )
    planner = results["scale"]["planner"]
    last = planner[-1]
    lines.append(
        f"- **Scale:** plan_changes for {last['declared']:,} declared OUs: "
        f"{ms(last['plan_seconds'])} ms, peak {_kib(last['plan_peak_bytes'])}; property parsing "
        f"{ms(last['parse_seconds'])} ms; growth per 10x of OUs: "
        + ", ".join(f"{r['plan_growth']:.1f}x" for r in planner[1:])
        + "."
    )
    art = results["artifact"]
    if art.get("measured"):
        lines.append(
            f"- **Artifact:** {_mb(art['bytes'])} unzipped, {_mb(art['zipped_bytes'])} zipped; "
            + ", ".join(f"{p['package']} {_mb(p['bytes'])}" for p in art["top_packages"])
            + "."
        )
    return lines


def calls_section(results: dict[str, Any]) -> list[str]:
    calls = results["calls"]
    rows = calls["rows"]
    out = [
        "## 1. API calls per operation",
        "",
        "Counted from the emulator's call records (boto3 over HTTP from the handler process). "
        "Each operation starts from the membership as the old declaration left it. "
        "Bound = `max(ceil(adds/5), ceil(removes/5))` UpdateMembership calls, 1 if only other fields "
        "change, 0 if nothing does. Excess = UpdateMembership calls - bound. Every answer was checked "
        "(SUCCESS at the receiver) and the membership's final OUs and name compared with the declaration.",
        "",
    ]
    body = []
    for r in rows:
        body.append(
            [
                r["case"],
                r["request_type"],
                r["bound"],
                r["ours"]["updates"],
                f"**{r['ours_excess']}**",
                r["ours"]["gets"],
                r["naive"]["updates"],
                f"**{r['naive_excess']}**",
                r["naive"]["gets"],
                "ok" if r["ours"]["state_ok"] and r["naive"]["state_ok"] else "WRONG",
            ]
        )
    out.append(
        table(
            [
                "change",
                "type",
                "bound",
                "ours Update",
                "ours excess",
                "ours Get",
                "naive Update",
                "naive excess",
                "naive Get",
                "final state",
            ],
            body,
        )
    )
    if calls["problems"]:
        out += ["", "**Problems:** " + "; ".join(calls["problems"])]
    return out


def wall_section(results: dict[str, Any]) -> list[str]:
    calls = results["calls"]
    latency = calls["latency"]
    nagle = results.get("nagle", {})
    out = [
        f"## 2. Wall time per operation at {latency * 1000:.0f} ms per call",
        "",
        f"Handler time inside the handler process (`handler(event, context)`, answer PUT included), "
        f"median of {calls['repeats']} runs per row (1 run for rows whose bound exceeds "
        f"{calls['big_bound']} calls), ours and naive interleaved. Bound = bound calls x latency. "
        "Ours' own floor = its calls (GetMembership included) x latency.",
        "",
    ]
    body = []
    for r in calls["rows"]:
        w = r.get("wall")
        if not w:
            continue
        body.append(
            [
                r["case"],
                r["ours"]["gets"] + r["ours"]["updates"],
                r["naive"]["gets"] + r["naive"]["updates"],
                ms(w["bound"], 0),
                ms(w["ours_calls_floor"], 0),
                ms(w["ours"]),
                ms(w["naive"]),
                fmt_ratio(w["ours_over_naive"]),
                fmt_ratio(w["ours_over_bound"]),
                ms(w["ours_minus_bound"]),
            ]
        )
    out.append(
        table(
            [
                "change",
                "ours calls",
                "naive calls",
                "bound ms",
                "ours floor ms",
                "ours ms",
                "naive ms",
                "ours/naive",
                "ours/bound",
                "ours - bound ms",
            ],
            body,
        )
    )
    first = calls.get("first_invocation", {})
    if first:
        out += [
            "",
            "First invocation after import (no-change Update, before the grid): "
            + ", ".join(
                f"{h} {ms(v['first_invocation_seconds'])} ms (import {ms(v['import_seconds'])} ms)"
                for h, v in first.items()
            )
            + ".",
        ]
    if nagle:
        out += [
            "",
            f"The bench turns on TCP_NODELAY in the local servers (`sirlocal.JSONRequestHandler`): "
            f"with Nagle's algorithm on, a GetMembership against the emulator took "
            f"{ms(nagle['nagle_on'])} ms at latency 0, with it off {ms(nagle['nodelay'])} ms "
            "(measured in this run); the stall is the stand-in's, not the handler's.",
        ]
    return out


def coldstart_section(results: dict[str, Any]) -> list[str]:
    cold = results["coldstart"]
    out = [
        "## 3. Cold start",
        "",
        "Process start to a ready handler: the parent notes the clock, spawns "
        "`python -c 'import <module>; <module>.handler; print(time.time())'` with a region, "
        "IDEMPOTENCY_TABLE_NAME and dummy credentials, and takes the child's clock once the module "
        "(imports and module-level setup) is loaded. Ours = `sir_membership.app`, bare = "
        "`bench/bare_handler.py` (imports boto3, creates a security-ir client). Interleaved runs; "
        "ms as median (IQR; min-max).",
        "",
    ]
    body = []
    for key in ("dev", "artifact"):
        if key not in cold:
            continue
        c = cold[key]
        body.append(
            [
                c["label"],
                c["runs"],
                _spread(c["ours"]),
                _spread(c["bare"]),
                ms(c["empty_interpreter"]["median"], 0),
                f"**{c['ratio_of_medians']:.2f}x**",
                f"{c['paired_ratio']['q1']:.2f}-{c['paired_ratio']['q3']:.2f}x",
            ]
        )
    out.append(
        table(
            [
                "setting",
                "runs",
                "ours ms",
                "bare ms",
                "empty python ms",
                "ours/bare (medians)",
                "paired ratio IQR",
            ],
            body,
        )
    )
    imp = cold["importtime"]["ours"]
    bare_imp = cold["importtime"]["bare"]
    out += [
        "",
        f"`python -X importtime -c 'import sir_membership.app'` (median of {imp['runs']} runs): "
        f"{imp['total_ms']:.0f} ms in total, of which **{imp['module_body_self_ms']:.0f} ms is "
        "`sir_membership.app`'s own module body** (client and persistence-layer construction, which "
        f"importtime books as the module's self time). Bare handler: {bare_imp['total_ms']:.0f} ms "
        f"(its body {bare_imp['module_body_self_ms']:.0f} ms).",
        "",
        "Top 10 imports by cumulative time (the module itself excluded):",
        "",
        table(
            ["module", "depth", "cumulative ms"],
            [[f"`{m['module']}`", m["depth"], f"{m['ms']:.1f}"] for m in imp["top_cumulative_ms"]],
        ),
        "",
        "Top 10 imports that only ours loads (not imported by the bare handler), by cumulative time:",
        "",
        table(
            ["module", "depth", "cumulative ms"],
            [
                [f"`{m['module']}`", m["depth"], f"{m['ms']:.1f}"]
                for m in cold["only_ours_top_cumulative_ms"]
            ],
        ),
        "",
        "Top 10 packages by import self time (summed over their modules):",
        "",
        table(
            ["package", "self ms"],
            [[f"`{p['package']}`", f"{p['ms']:.1f}"] for p in imp["top_packages_self_ms"]],
        ),
        "",
        f"Replay of `app.py`'s module body step by step in a fresh interpreter (median of "
        f"{cold['replay']['runs']} runs; the last step is not in app.py, it is the suggested alternative):",
        "",
        table(["step", "ms"], [[s["step"], ms(s["median"])] for s in cold["replay"]["steps"]]),
    ]
    return out


def warm_section(results: dict[str, Any]) -> list[str]:
    w = results["warm"]
    b = w["ours_breakdown"]
    return [
        "## 4. Warm overhead per event",
        "",
        f"One handler process, emulator latency 0, {w['warmup']} warm-up events then {w['n']} measured "
        "events each, alternating. Ours: an Update that renames the membership (1 GetMembership + 1 "
        "UpdateMembership, idempotency records on moto's DynamoDB server, answer PUT over HTTPS to the "
        "receiver). Bare: `get_membership` + `update_membership`, nothing else. ms as median (IQR; min-max).",
        "",
        table(
            ["handler", "per event ms"],
            [["ours", _spread(w["ours"])], ["bare get + update", _spread(w["bare"])]],
        ),
        "",
        f"Ours - bare: **{ms(w['ours_minus_bare'])} ms** per event ({w['ours_over_bare']:.2f}x). Where ours' "
        "time goes (medians; botocore before-call/after-call hooks, and the same answer PUT timed alone):",
        "",
        table(
            ["part", "ms"],
            [
                ["security-ir calls (2)", ms(b["security_ir_calls"])],
                [
                    f"DynamoDB idempotency calls ({b['dynamodb_calls_per_event']:.0f})",
                    ms(b["dynamodb_calls"]),
                ],
                ["answer PUT (new TLS connection), timed alone", ms(b["answer_put"])],
                ["the rest (crhelper, Powertools, parsing, planning, logging)", ms(b["rest"])],
                ["bare: security-ir calls (2)", ms(w["bare_security_ir_calls"])],
            ],
        ),
    ]


def scale_section(results: dict[str, Any], png_name: str | None) -> list[str]:
    planner = results["scale"]["planner"]
    out = [
        "## 5. Scale",
        "",
        "`plan_changes` on an Update with N declared OUs, half of them new and N/10 removed "
        "(median time over ≥3 runs; tracemalloc peak in a separate run). `parse_properties` (every "
        "OU id checked against the model's pattern) is what each request also pays.",
        "",
        table(
            [
                "declared OUs",
                "adds",
                "removes",
                "planned calls",
                "plan ms",
                "plan growth",
                "plan peak",
                "parse ms",
                "parse peak",
            ],
            [
                [
                    f"{r['declared']:,}",
                    f"{r['adds']:,}",
                    f"{r['removes']:,}",
                    f"{r['planned_calls']:,}",
                    ms(r["plan_seconds"], 3),
                    f"{r['plan_growth']:.1f}x" if "plan_growth" in r else "-",
                    _kib(r["plan_peak_bytes"]),
                    ms(r["parse_seconds"], 3),
                    _kib(r["parse_peak_bytes"]),
                ]
                for r in planner
            ],
        ),
        "",
        "Peak RSS of a fresh handler process (VmHWM from /proc/self/status) after importing the "
        "handler, and after it handled one Update event against the local services (latency 0):",
        "",
    ]
    body = []
    inherited = 0
    for r in results["scale"]["rss"]:
        if r["handler"] == "bare":
            b = r["after_import"]
            inherited = b["maxrss_kb"]
            body.append(
                ["bare handler, import only", "-", "-", "-", _kib(b["vmhwm_kb"] * 1024), "-", "-"]
            )
            continue
        body.append(
            [
                f"ours, {r['declared']:,} declared OUs (+{r['adds']:,} -{r['removes']:,})",
                f"{r['calls']:,}",
                ms(r["seconds"], 0),
                "ok" if r["state_ok"] else "WRONG",
                _kib(r["after_import"]["vmhwm_kb"] * 1024),
                _kib(r["after_invocation"]["vmhwm_kb"] * 1024),
                _kib(r["peak_delta_kb"] * 1024),
            ]
        )
    out.append(
        table(
            [
                "process",
                "security-ir calls",
                "event ms",
                "final state",
                "peak after import",
                "peak after the event",
                "the event added",
            ],
            body,
        )
    )
    bare_hwm = next(
        r["after_import"]["vmhwm_kb"] for r in results["scale"]["rss"] if r["handler"] == "bare"
    )
    if inherited > bare_hwm * 1.2:
        out += [
            "",
            "(`resource.getrusage().ru_maxrss` is not usable for this on Linux: it survives fork + exec, "
            f"so the handler processes reported the bench parent's RSS at the fork, e.g. "
            f"{_kib(inherited * 1024)} for the bare handler; both values are in results.json.)",
        ]
    if png_name:
        out += ["", f"![planner time, memory and wall time]({png_name})"]
    else:
        out += ["", f"({results.get('plot') or 'no plot'})"]
    return out


def artifact_section(results: dict[str, Any]) -> list[str]:
    art = results["artifact"]
    out = ["## 6. Artifact size", ""]
    if not art.get("measured"):
        return [*out, f"Not measured: {art['source']}."]
    built = f", built in {art['build_seconds']:.1f} s" if art.get("build_seconds") else ""
    out += [
        f"From {art['source']}{built}: **{_mb(art['bytes'])}** in {art['files']:,} files "
        f"(no `__pycache__`), **{_mb(art['zipped_bytes'])} zipped** (deflate). Top 5 packages:",
        "",
        table(["package", "size"], [[p["package"], _mb(p["bytes"])] for p in art["top_packages"]]),
        "",
        f"`botocore/data` holds {art['botocore_data_services']} service models, {_mb(art['botocore_data_bytes'])}; "
        f"the function uses security-ir and dynamodb, whose models plus botocore's shared data files are "
        f"{_mb(art['botocore_data_needed_bytes'])}.",
    ]
    return out


def render(results: dict[str, Any], png_name: str | None = None) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"- Date: {m['date']}",
        f"- Machine: nproc {m['nproc']}, Python {m['python']} ({m['platform']})",
        f"- Command: `{results['command']}`"
        + (" (`make bench`)" if results.get("via_make") else ""),
        f"- Run time: {results['seconds']:.0f} s. Every figure below was measured by this run; ratios are "
        "within it. Raw numbers: `results.json`.",
        "",
        "## Headline",
        "",
        *headline(results),
        "",
        *calls_section(results),
        "",
        *wall_section(results),
        "",
        *coldstart_section(results),
        "",
        *warm_section(results),
        "",
        *scale_section(results, png_name),
        "",
        *artifact_section(results),
        "",
    ]
    return "\n".join(lines)
