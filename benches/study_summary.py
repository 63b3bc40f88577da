"""The figures of benches/full-size-study.sh, and the whole study's time
extrapolated from them, with the arithmetic written out.

    python benches/study_summary.py WORK OUT [--scale full|tiny]

Reads WORK/stages.tsv, each stage's .out/.err, the run folders under
WORK/checkpoints, WORK/reports/*/audit.json, WORK/localize/summary.json and
OUT/gpu-util.csv; writes OUT/summary.md and OUT/summary.json and prints the
Markdown. Standard library only (it runs on the GPU machine's Python).

The extrapolation. Every training stage trains one pair of runs (with and
without the watermark) for E epochs. Its log dates each run's start and the
end of each epoch; COMPLETE's time ends the run. The marginal epoch (train,
evaluate, save) of a run is (t_E - t_1) / (E - 1), measured under the stage's
own concurrency. A stage at 20 epochs takes its measured wall time plus
(20 - E) marginal epochs per run, summed over runs trained one after the
other, the longest for runs trained at once. The study's 12 runs are three
such pairs without augmentation and three with: 3 x stage(aug0) +
3 x stage(aug1) at 20 epochs, less the start-up (process start, data
generation) of all but the first pair, which one `train` call pays once.
The audit: 12 x the mean seconds per run in audit.json plus the audit's
fixed cost (its wall time less the per-run seconds).
"""
import argparse
import csv
import json
import os
import re
import statistics
import sys
from pathlib import Path

STUDY_EPOCHS = 20
SEEDS = 3
STUDY_RUNS = 12

ap = argparse.ArgumentParser()
ap.add_argument("work", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--scale", default="full")
args = ap.parse_args()
work, out = args.work, args.out

stages, skipped = {}, []
for row in csv.reader(open(work / "stages.tsv"), delimiter="\t"):
    if len(row) != 4:
        continue
    if row[3] == "skipped":
        skipped.append(row[0])
        continue
    start, end = float(row[1]), float(row[2])
    stages[row[0]] = {"start": start, "end": end, "exit": int(row[3]), "seconds": end - start}

util = []
util_path = out / "gpu-util.csv"
if util_path.is_file():
    for row in csv.reader(open(util_path)):
        try:
            util.append((float(row[0]), float(row[1]), float(row[2])))
        except (ValueError, IndexError):
            pass


def busy(name):
    """Mean GPU utilisation (%) and peak memory (MiB) over a stage's samples."""
    s = stages.get(name)
    if not s:
        return None, None
    inside = [u for u in util if s["start"] <= u[0] <= s["end"]]
    if not inside:
        return None, None
    return statistics.mean(u[1] for u in inside), max(u[2] for u in inside)


def stage_json(name):
    path = work / f"{name}.out"
    if not path.is_file() or stages.get(name, {}).get("exit") != 0:
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


summary = {"scale": args.scale, "stages": stages}
md = [f"# Full-size study ({args.scale})", ""]

doctor = stage_json("doctor") or {}
gpu = ", ".join(g.get("name", "?") for g in doctor.get("gpus", [])) if isinstance(doctor.get("gpus"), list) else None
summary["doctor"] = doctor
md += [f"Device: {gpu or doctor.get('default_device', 'unknown')}; libtorch {doctor.get('libtorch_version', '?')}.", ""]

# Throughput.
md += ["## Training throughput (images/s, random data)", "",
       "| model | precision | layout | nave-lab | PyTorch | ratio | GPU busy |", "|---|---|---|---|---|---|---|"]
pairs = [("resnet50", "fp32", "nchw"), ("resnet50", "bf16", "nchw"), ("resnet50", "bf16", "cl"), ("vit_s16", "bf16", None)]
throughput = {}
for arch, precision, layout in pairs:
    key = f"tp-{arch}-{precision}" + (f"-{layout}" if layout else "")
    nave = stage_json(f"{key}-nave")
    torch = stage_json(f"{key}-torch")
    n = nave and nave["images_per_s"]
    t = torch and torch["images_per_s"]
    throughput[key] = {"nave": n, "torch": t}
    b, _ = busy(f"{key}-nave")
    cell = lambda v: f"{v:,.0f}" if v else "—"
    md.append(f"| {arch} | {precision} | {layout or '—'} | {cell(n)} | {cell(t)} | "
              f"{f'{n / t:.2f}' if n and t else '—'} | {f'{b:.0f}%' if b is not None else '—'} |")
summary["throughput"] = throughput
fp32 = throughput["tp-resnet50-fp32-nchw"]["nave"]
cl = throughput["tp-resnet50-bf16-cl"]
vit = throughput["tp-vit_s16-bf16"]
targets = {
    "resnet50 bf16 channels-last / fp32 (>= 1.5)": cl["nave"] / fp32 if cl["nave"] and fp32 else None,
    "resnet50 bf16 channels-last, nave-lab / PyTorch (>= 1.0)": cl["nave"] / cl["torch"] if cl["nave"] and cl["torch"] else None,
    "vit_s16 bf16, nave-lab / PyTorch (>= 1.0)": vit["nave"] / vit["torch"] if vit["nave"] and vit["torch"] else None,
}
summary["throughput_targets"] = targets
md += [""] + [f"- {k}: {f'{v:.2f}' if v else 'not measured'}" for k, v in targets.items()] + [""]

# Training slices.
LINE = re.compile(r"^(\d+\.\d+) (.*)$")
START = re.compile(r"training (\S+) on (.*)$")
EPOCH = re.compile(r"^(\S+) epoch (\d+)/(\d+): .*\| (\d+) img/s$")
study_dir = work / "checkpoints" / "watermark-synthetic"


def runs_of(name):
    """Per run: start, epoch ends, COMPLETE time, images/s of the epochs after the first."""
    path = work / f"{name}.err"
    runs = {}
    if not path.is_file():
        return runs
    for raw in path.read_text().splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        t, text = float(m.group(1)), m.group(2)
        if (s := START.search(text)):
            runs.setdefault(s.group(1), {"epochs": {}, "ips": []})["start"] = t
            runs[s.group(1)]["placement"] = s.group(2)
        elif (e := EPOCH.match(text)):
            r = runs.setdefault(e.group(1), {"epochs": {}, "ips": []})
            r["epochs"][int(e.group(2))] = t
            r["of"] = int(e.group(3))
            if int(e.group(2)) > 1:
                r["ips"].append(float(e.group(4)))
    for run_id, r in runs.items():
        complete = study_dir / run_id / "COMPLETE"
        r["end"] = os.stat(complete).st_mtime if complete.is_file() else None
    return runs


slices = {}
md += ["## The study's slices (one pair of runs each)", "",
       "| stage | runs at once | epochs | wall s | first run starts after s | marginal epoch s (per run) | train images/s (per run) | GPU busy | GPU memory peak | at 20 epochs s |",
       "|---|---|---|---|---|---|---|---|---|---|"]
for name, parallel in [("train-aug0-s0-serial", 1), ("train-aug0-s1-parallel2", 2),
                       ("train-aug1-s0-serial", 1), ("train-aug1-s1-parallel2", 2)]:
    s = stages.get(name)
    runs = runs_of(name)
    if not s or s["exit"] != 0 or len(runs) != 2 or any(len(r["epochs"]) < 2 or "start" not in r for r in runs.values()):
        md.append(f"| {name} | {parallel} | — | {s['seconds']:.1f} | | (failed or incomplete: see {name}.err) | | | | |" if s else f"| {name} | not run |")
        continue
    marginal = {}
    for run_id, r in runs.items():
        e = sorted(r["epochs"])
        marginal[run_id] = (r["epochs"][e[-1]] - r["epochs"][e[0]]) / (e[-1] - e[0])
    epochs = max(max(r["epochs"]) for r in runs.values())
    extra = [(STUDY_EPOCHS - max(r["epochs"])) * marginal[i] for i, r in runs.items()]
    at20 = s["seconds"] + (sum(extra) if parallel == 1 else max(extra))
    startup = min(r["start"] for r in runs.values()) - s["start"]
    b, mem = busy(name)
    ips = [statistics.mean(r["ips"]) for r in runs.values() if r["ips"]]
    slices[name] = {"parallel": parallel, "epochs": epochs, "wall": s["seconds"], "startup": startup,
                    "marginal_epoch": marginal, "train_images_per_s": ips, "gpu_busy": b, "gpu_memory_mib": mem,
                    "at_20_epochs": at20, "extra_epochs_seconds": extra}
    md.append(f"| {name} | {parallel} | {epochs} | {s['seconds']:.1f} | {startup:.1f} | "
              + ", ".join(f"{v:.2f}" for v in marginal.values()) + " | "
              + ", ".join(f"{v:,.0f}" for v in ips) + " | "
              + (f"{b:.0f}%" if b is not None else "—") + " | " + (f"{mem:,.0f} MiB" if mem is not None else "—")
              + f" | {at20:.1f} |")
summary["slices"] = slices

# The audit.
audit_path = next(iter(sorted((work / "reports").glob("*/audit.json"))), None) if (work / "reports").is_dir() else None
audit = json.loads(audit_path.read_text()) if audit_path else None
audit_estimate = None
if audit and "audit" in stages:
    per_run = [r.get("seconds", 0.0) for r in audit["runs"]]
    fixed = stages["audit"]["seconds"] - sum(per_run)
    audit_estimate = fixed + STUDY_RUNS * statistics.mean(per_run)
    b, mem = busy("audit")
    summary["audit"] = {"runs": len(per_run), "wall": stages["audit"]["seconds"], "per_run": per_run,
                        "fixed": fixed, "study_estimate": audit_estimate, "gpu_busy": b}
    md += ["", "## The audit", "",
           f"{len(per_run)} runs, {audit['settings'].get('probes', '?') if audit.get('settings') else '?'} probes: "
           f"{stages['audit']['seconds']:.1f} s wall, {statistics.mean(per_run):.1f} s a run "
           f"({', '.join(f'{v:.1f}' for v in per_run)}), {fixed:.1f} s besides the runs"
           + (f"; GPU busy {b:.0f}%" if b is not None else "") + "."]

# The extrapolation.
md += ["", "## The whole study, extrapolated", ""]
estimate = {}
for mode, (a0, a1) in {"one run at a time": ("train-aug0-s0-serial", "train-aug1-s0-serial"),
                       "two runs at once (--parallel 2)": ("train-aug0-s1-parallel2", "train-aug1-s1-parallel2")}.items():
    if a0 not in slices or a1 not in slices:
        md.append(f"- {mode}: not measured")
        continue
    x0, x1 = slices[a0], slices[a1]
    startup = min(x0["startup"], x1["startup"])
    train = SEEDS * x0["at_20_epochs"] + SEEDS * x1["at_20_epochs"] - (2 * SEEDS - 1) * startup
    total = train + (audit_estimate or 0.0)
    estimate[mode] = {"train": train, "audit": audit_estimate, "total": total}
    md.append(f"- {mode}: train = {SEEDS} x {x0['at_20_epochs']:.1f} (pair, no augmentation, 20 epochs) + "
              f"{SEEDS} x {x1['at_20_epochs']:.1f} (pair, augmentation) - {2 * SEEDS - 1} x {startup:.1f} (start-up paid once) "
              f"= {train:.0f} s; + audit {audit_estimate or 0:.0f} s = **{total:.0f} s ({total / 60:.1f} min)**")
for name in ("train-aug0-s0-serial", "train-aug1-s0-serial"):
    if name in slices:
        x = slices[name]
        md.append(f"  - {name} at 20 epochs: {x['wall']:.1f} s measured + "
                  + " + ".join(f"{v:.1f}" for v in x["extra_epochs_seconds"])
                  + f" s for the remaining epochs = {x['at_20_epochs']:.1f} s")
if audit_estimate is not None and "audit" in summary:
    a = summary["audit"]
    md.append(f"- audit = {a['fixed']:.1f} s fixed + {STUDY_RUNS} x {statistics.mean(a['per_run']):.1f} s = {audit_estimate:.0f} s")
summary["estimate"] = estimate

# Figure 6 at its scale.
if audit:
    arch = audit["runs"][0].get("arch", "?") if audit["runs"] else "?"
    md += ["", f"## Figure 6 at {audit.get('image_size', '?')} px, {arch} (the audited runs)", "",
           "| run | epochs | clean acc | flipped acc | gap | truth | wm IoU | grid-fair IoU | wm_shift | detector score | flagged |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    figure = []
    for r in audit["runs"]:
        metrics = study_dir / r["id"] / "metrics.jsonl"
        epochs = len(metrics.read_text().splitlines()) if metrics.is_file() else None
        v = r.get("verdict") or {}
        acc = r.get("accuracy", {})
        num = lambda x, f="{:.3f}": f.format(x) if isinstance(x, (int, float)) else "—"
        md.append(f"| {r['id']} | {epochs} | {num(acc.get('clean'))} | {num(acc.get('flipped'))} | {num(r.get('shortcut_gap'))} | "
                  f"{r.get('truth', '?')} | {num(r.get('wm_iou'))} | {num(r.get('wm_iou_fair'))} | {num(r.get('wm_shift'))} | "
                  f"{num(v.get('shortcut_score'))} | {v.get('flagged', '—')} |")
        figure.append({k: r.get(k) for k in ("id", "accuracy", "shortcut_gap", "truth", "wm_iou", "wm_iou_fair", "wm_shift", "verdict")} | {"epochs": epochs})
    summary["figure6"] = figure

# The demo on the device: each stage's time, and every audited run's
# verdict (the revised run among them when revise ran).
demo_stages = [n for n in ("demo-train", "demo-audit", "demo-revise") if n in stages]
if demo_stages:
    md += ["", "## The demo on the device (experiments/demo.yaml)", ""]
    md.append(", ".join(f"{n}: {stages[n]['seconds']:.1f} s (exit {stages[n]['exit']})" for n in demo_stages) + ".")
    demo_audit = work / "demo-reports" / "demo" / "audit.json"
    if demo_audit.is_file():
        d = json.loads(demo_audit.read_text())
        num = lambda x, f="{:.3f}": f.format(x) if isinstance(x, (int, float)) else "—"
        md += ["", "| run | clean acc | gap | detector score | flagged |", "|---|---|---|---|---|"]
        demo_rows = []
        for r in d.get("runs", []):
            v = r.get("verdict") or {}
            acc = r.get("accuracy", {})
            md.append(f"| {r['id']} | {num(acc.get('clean'))} | {num(r.get('shortcut_gap'))} | "
                      f"{num(v.get('shortcut_score'))} | {v.get('flagged', '—')} |")
            demo_rows.append({"id": r["id"], "clean": acc.get("clean"), "gap": r.get("shortcut_gap"),
                              "score": v.get("shortcut_score"), "flagged": v.get("flagged")})
        summary["demo"] = {"stages": {n: stages[n] for n in demo_stages}, "runs": demo_rows}

# k-means and localisation.
kmeans = stage_json("kmeans")
if kmeans:
    rows = [m for m in kmeans.get("medians", []) if m.get("engine") == "kmeans"]
    summary["kmeans"] = rows
    for m in rows:
        md += ["", f"k-means on {kmeans['rows']:,} x {kmeans['dims']:,} ({kmeans['source']}), K = {m['k']}: "
               f"median {m['seconds']:.3f} s over {m['runs']} seeds, {m['iterations']} iterations."]
loc = work / "localize" / "summary.json"
if loc.is_file() and stages.get("localize", {}).get("exit") == 0:
    l = json.loads(loc.read_text())
    summary["localize"] = {"seconds_per_image": l.get("seconds_per_image"), "wall": stages["localize"]["seconds"]}
    md += ["", f"localize (author protocol, generated VOC-layout images, a trained ResNet50): "
           f"{l.get('seconds_per_image', float('nan')):.3f} s per image, {stages['localize']['seconds']:.1f} s wall."]

failed = [n for n, s in stages.items() if s["exit"] != 0]
summary["failed_stages"] = failed
summary["skipped_stages"] = skipped
if failed:
    md += ["", "Failed stages: " + ", ".join(failed) + " (their .err files are in results.tar.gz)."]
if skipped:
    md += ["", "Skipped (the time budget was spent): " + ", ".join(skipped) + "."]
text = "\n".join(md) + "\n"
(out / "summary.md").write_text(text)
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(text)
sys.exit(1 if failed else 0)
