#!/usr/bin/env python3
"""Load test of the annotation studio with wrk: sustained page submissions.

Creates a Browse project (pages of 48 images, HITs of 10 pages) or, with
--task tag, a Tag project (one image per page, HITs of 20 pages; each page
with three icons added, one moved, tab changes and a 150-sample mouse
trace), starts
`labelscope serve` on 127.0.0.1 with a fresh SQLite database, starts many
assignments through the API, then lets wrk submit distinct pages (every
request a new (assignment, page), each image record with a mouse trace, hover
events and clicks like a real page) for --duration seconds. Afterwards it
checks that every page answered 200 is in the database (zero lost pages) and
that no request failed, and prints the submissions/s, latency percentiles
and the payload size per page.

    python3 bench/studio_load.py --bin target/release/labelscope --duration 60
    python3 bench/studio_load.py --bin target/release/labelscope --duration 60 --task tag
"""

import argparse
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

IMAGES_PER_PAGE = 48
PAGES_PER_HIT = 10
TAG_PAGES_PER_HIT = 20


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def get(base, path):
    with urllib.request.urlopen(base + path) as r:
        return json.load(r)


def page_records(ids, rng):
    """One page's records: 16 trace samples per image, hover in/out, a click on ~30 % of the images."""
    out = []
    t = 100.0
    for i in ids:
        trace = []
        for _ in range(16):
            t += 16 + rng.random() * 30
            trace.append({"x": round(rng.random(), 4), "y": round(rng.random(), 4), "time": round(t, 1)})
        clicks = [{"x": trace[-1]["x"], "y": trace[-1]["y"], "time": round(t + 5, 1)}] if rng.random() < 0.3 else []
        out.append({
            "imageID": i, "originalSize": {"width": 500, "height": 375}, "onPageSize": {"width": 150, "height": 112.5},
            "imagePosition": {"x": 10 + (i % 8) * 158, "y": 200 + (i // 8 % 6) * 158},
            "hoveredRecord": [{"action": "enter", "time": trace[0]["time"] - 1}, {"action": "leave", "time": t + 20}],
            "mouseTracking": trace, "selectedRecord": clicks, "selected": bool(clicks),
        })
        t += 40
    return out


def tag_page(image_id, rng):
    """One Tag page: three icons added, one moved, two tab changes, 150 trace samples (~10 s at 16 ms, with pauses)."""
    t = 200.0
    trace = []
    for _ in range(150):
        t += 16 + rng.random() * 50
        trace.append({"x": round(rng.random(), 4), "y": round(rng.random(), 4), "timeAt": round(t, 1)})
    actions, tabs = [], []
    for k, (icon, sup) in enumerate([("dog", "animal"), ("person", "person"), ("car", "vehicle")]):
        tabs.append({"superclass": sup, "timeAt": round(300.0 + 900 * k, 1), "keyboard": k == 2})
        actions.append({"actionType": "add", "iconType": icon, "pointTo": {"x": round(rng.random(), 4), "y": round(rng.random(), 4)},
                        "timeAt": round(400.0 + 900 * k, 1)})
    p = actions[0]["pointTo"]
    actions.append({"actionType": "move", "iconType": "dog", "pointFrom": p, "pointTo": {"x": 0.5, "y": 0.5}, "timeAt": 3000.0})
    return {"time_spent_ms": round(t), "imageID": image_id, "originalSize": {"width": 640, "height": 480},
            "onPageSize": {"width": 800, "height": 600}, "imagePosition": {"x": 10, "y": 140}, "timeSpent": round(t),
            "actionHistories": actions, "categoryHistories": tabs, "mouseTracking": trace}


LUA = r"""
local slots = dofile(os.getenv("SLOTS_LUA"))
local templates = slots.templates
-- The slots travel as one string (a table literal of 100k+ entries exceeds
-- LuaJIT's constant limit): "path assignment key template" per line.
local list = {}
for path, a, key, t in slots.data:gmatch("(%S+) (%d+) (%S+) (%d+)\n") do
  list[#list + 1] = {path, a, key, tonumber(t)}
end
local n = 0
local errors = 0
request = function()
  n = n + 1
  local s = list[((n - 1) % #list) + 1]
  local body = '{"assignment":' .. s[2] .. ',"key":"' .. s[3] .. '",' .. templates[s[4]] .. '}'
  return wrk.format("POST", s[1], {["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    if errors < 5 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
  end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors_status=%d errors_socket=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/labelscope")
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--hits", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1500, help="assignments per HIT")
    ap.add_argument("--port", type=int, default=18431)
    ap.add_argument("--task", choices=["browse", "tag"], default="browse")
    args = ap.parse_args()
    tag = args.task == "tag"
    pages_per_hit = TAG_PAGES_PER_HIT if tag else PAGES_PER_HIT
    per_page = 1 if tag else IMAGES_PER_PAGE

    with tempfile.TemporaryDirectory() as tmp:
        images = os.path.join(tmp, "images")
        os.makedirs(images)
        wnids = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668"]
        entries = []
        for h in range(args.hits):
            wnid = wnids[h % len(wnids)]
            for k in range(per_page * pages_per_hit):
                name = f"{wnid}_{h}_{k}.png"
                with open(os.path.join(images, name), "wb") as f:
                    f.write(b"\x89PNG\r\n\x1a\n")
                entries.append({"file": name} if tag else {"file": name, "class": wnid, "known_positive": k % 48 == 0})
        manifest = os.path.join(tmp, "m.json")
        with open(manifest, "w") as f:
            json.dump({"name": "load", "task": args.task, "images": entries}, f)
        db = os.path.join(tmp, "studio.sqlite")
        links = os.path.join(tmp, "links.txt")
        server = subprocess.Popen([args.bin, "serve", "--db", db, "--images", images, "--addr", f"127.0.0.1:{args.port}",
                                   "--manifest", manifest, "--links", links], stderr=subprocess.PIPE, text=True)
        try:
            while True:
                line = server.stderr.readline()
                if not line:
                    sys.exit("server exited")
                if "listening on" in line:
                    break
            base = f"http://127.0.0.1:{args.port}"
            tokens = [l.rsplit("/", 1)[1] for l in open(links).read().split()]
            rng = random.Random(1)
            templates, template_index, slots = [], {}, []
            t0 = time.time()
            for ti, token in enumerate(tokens):
                for w in range(args.workers):
                    a = post(base, f"/api/hit/{token}/start", {"worker": f"load-{ti}-{w}"})
                    for p in range(pages_per_hit):
                        if (ti, p) not in template_index:
                            pg = get(base, f"/api/hit/{token}/page/{p}?assignment={a['assignment']}&key={a['key']}")
                            ids = [im["id"] for im in pg["images"]]
                            template_index[(ti, p)] = len(templates) + 1
                            if tag:
                                body = json.dumps(tag_page(ids[0], rng), separators=(",", ":"))[1:-1]
                            else:
                                body = '"time_spent_ms":41250,"images":' + json.dumps(page_records(ids, rng), separators=(",", ":"))
                            templates.append(body)
                        slots.append((f"/api/hit/{token}/page/{p}", a["assignment"], a["key"], template_index[(ti, p)]))
            rng.shuffle(slots)
            print(f"{len(slots)} page slots over {len(tokens)} HITs x {args.workers} assignments "
                  f"(set-up {time.time() - t0:.0f} s)")
            lua_slots = os.path.join(tmp, "slots.lua")
            with open(lua_slots, "w") as f:
                f.write("return {templates = {")
                f.write(",".join("[==[" + t + "]==]" for t in templates))
                f.write("}, data = [==[\n")
                f.write("".join(f"{s[0]} {s[1]} {s[2]} {s[3]}\n" for s in slots))
                f.write("]==]}\n")
            script = os.path.join(tmp, "load.lua")
            with open(script, "w") as f:
                f.write(LUA)
            body_bytes = [len('{"assignment":1,"key":"' + "0" * 32 + '",') + len(t) + 1 for t in templates]
            out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s", script, base],
                                 env={**os.environ, "SLOTS_LUA": lua_slots}, capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            m = re.search(r"RESULT (.*)", out.stdout)
            if not m:
                sys.exit("wrk printed no result:\n" + out.stdout)
            r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
        finally:
            server.terminate()
            server.wait()
        con = sqlite3.connect(db)
        pages = con.execute("SELECT COUNT(*) FROM pages").fetchone()[0]
        records = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        con.close()
        expected = min(r["requests"], len(slots))
        secs = r["duration_us"] / 1e6
        print(f"machine: {os.uname().machine}, {os.cpu_count()} cores; wrk -t1 -c{args.connections} -d{args.duration}s on the same machine")
        print(f"requests {r['requests']} in {secs:.1f} s = {r['requests'] / secs:.0f} submissions/s "
              f"({r['requests'] * per_page / secs:.0f} image records/s)")
        print(f"latency p50 {r['p50_us'] / 1000:.1f} ms, p90 {r['p90_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, "
              f"max {r['max_us'] / 1000:.1f} ms")
        what = "1 image: 4 actions, 3 tabs, 150 trace samples" if tag else "48 images, 16 trace samples each"
        print(f"task {args.task}; payload per page: {sum(body_bytes) / len(body_bytes) / 1024:.1f} KiB ({what})")
        print(f"non-200 answers {r['errors_status']}, socket errors {r['errors_socket']}; "
              f"pages stored {pages} for {expected} acknowledged (in flight at the end: {pages - expected}), records {records}")
        # Requests still in flight when wrk stops may be stored without being counted.
        lost = pages < expected or pages > min(len(slots), expected + args.connections)
        if r["errors_status"] or r["errors_socket"] or lost or records != pages * per_page:
            sys.exit("FAILED: errors or lost pages")


if __name__ == "__main__":
    main()
