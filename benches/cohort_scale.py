#!/usr/bin/env python3
"""Cohort engine benchmark at scale, with DuckDB running Circe's reference SQL as the peer.

In one run it:
  1. builds the on-disk index with the release `omopkit cohort` (unless it exists; --rebuild forces it) and
     reports the build time (Parquet load, sort, bitmaps, save), the index size on disk and the peak RSS;
  2. times all cohorts of ../shared/cohorts/expected-gibleed.csv with `omopkit cohort count --index ...
     --timings ...`, which times each definition inside the process (the index load is reported apart), in
     --repeat passes over all cohorts (default 3; the median pass counts), then writes their rows once with
     `omopkit cohort run` (not timed: writing hundreds of MB of CSV would only add the kernel's write-back
     to the next cohort's time);
  3. loads the same Parquet files into DuckDB (as ../shared/tools/circe_oracle.py does) and times the execution
     of the SQL that duckcdm (the Python port of OHDSI Circe) generates for each definition, in as many
     passes (the median counts), the result staying in a DuckDB table as ours stays in memory;
  4. checks that our rows equal DuckDB's, cohort by cohort (row and person counts only where the reference
     file marks the md5 with '-', i.e. where Circe's SQL leaves ties unordered), and prints per-cohort and summary figures
     (median / p95 / max, speed-up, index build time and size, peak RSS). Per-cohort figures also go to
     <out>/cohort_scale.csv.

Make the data (about 1,000,000 persons, 3 GB, ~2 minutes) and the binary, then run it with a Python that has
duckdb and duckcdm:
    python3 ../shared/tools/scale_cdm.py ../shared/data/eunomia-gibleed /tmp/gibleed-x372 372
    cargo build --release --bin omopkit
    python3 -m venv .venv && .venv/bin/pip install duckcdm duckdb
    .venv/bin/python benches/cohort_scale.py --cdm /tmp/gibleed-x372

Options: --index DIR (default <cdm>.index), --out DIR (default /tmp/cohort-scale), --bin PATH,
--limit N (first N cohorts only), --repeat N (passes, default 3), --rebuild, --no-duckdb (our side only).
"""
import argparse, csv, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")


def cohort_files():
    """(cohort id, definition path, rows only determined up to ties) for the cohorts of expected-gibleed.csv."""
    dirs = [os.path.join(SHARED, "cohorts", d) for d in ("cohort-generator", "phenotype-library")]
    with open(os.path.join(SHARED, "cohorts", "expected-gibleed.csv")) as f:
        ids = [(r["cohort_id"], r["md5"] == "-") for r in csv.DictReader(f)]
    out = []
    for cid, ties in ids:
        path = next((os.path.join(d, cid + ".json") for d in dirs if os.path.exists(os.path.join(d, cid + ".json"))), None)
        if path is None:
            sys.exit(f"definition {cid}.json not found under {dirs}")
        out.append((cid, path, ties))
    return out


def run_measured(cmd):
    """Runs a command; returns (wall seconds, stdout, stderr). Exits on failure."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])}... failed ({p.returncode}):\n{err[-3000:]}")
    return wall, out, err


def wrap(cmd):
    """Prefixes /usr/bin/time so that the peak RSS of exactly this process is reported on stderr."""
    if os.path.exists("/usr/bin/time"):
        return ["/usr/bin/time", "-f", "PEAK_RSS_KB=%M"] + cmd
    return cmd


def peak_rss(err):
    for line in err.splitlines()[::-1]:
        if line.startswith("PEAK_RSS_KB="):
            return int(line.split("=", 1)[1]) * 1024
    return None


def dir_size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def read_ours(path):
    with open(path) as f:
        next(f)
        return [(int(s), a, b) for s, a, b in (line.rstrip("\n").split(",") for line in f)]


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


def fmt_bytes(n):
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cdm", required=True, help="the CDM Parquet folder, e.g. GiBleed scaled with scale_cdm.py")
    ap.add_argument("--index")
    ap.add_argument("--out", default="/tmp/cohort-scale")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "omopkit"))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-duckdb", action="store_true")
    a = ap.parse_args()
    cdm = os.path.abspath(a.cdm)
    index = os.path.abspath(a.index or cdm.rstrip("/") + ".index")
    cohorts = cohort_files()[: a.limit]
    os.makedirs(a.out, exist_ok=True)
    rows_dir = os.path.join(a.out, "ours")
    shutil.rmtree(rows_dir, ignore_errors=True)

    # 1. index build
    build_wall = build_rss = None
    if a.rebuild or not os.path.exists(os.path.join(index, "manifest.json")):
        shutil.rmtree(index, ignore_errors=True)
        timings = os.path.join(a.out, "build-timings.csv")
        build_wall, _, err = run_measured(wrap([a.bin, "cohort", "count", "--cdm", cdm, "--index", index,
                                                "--timings", timings, cohorts[0][1]]))
        build_rss = peak_rss(err)
        with open(timings) as f:
            build_load = next(float(r["millis"]) for r in csv.DictReader(f) if r["step"] == "load") / 1e3
        print(f"index build: {build_load:.1f} s (process {build_wall:.1f} s), peak RSS {fmt_bytes(build_rss)}")
    else:
        build_load = None
        print(f"index build: reusing {index} (pass --rebuild to time the build)")
    index_size = dir_size(index)

    # 2. our evaluation: `--repeat` timed passes over all cohorts in one process, then the rows once
    timings = os.path.join(a.out, "timings.csv")
    paths = [p for _, p, _ in cohorts]
    _, _, err = run_measured(wrap([a.bin, "cohort", "count", "--cdm", cdm, "--index", index,
                                   "--timings", timings] + paths * a.repeat))
    count_rss = peak_rss(err)
    runs, load_ms = {}, None
    with open(timings) as f:
        for r in csv.DictReader(f):
            if r["step"] == "load":
                load_ms = float(r["millis"])
            else:
                runs.setdefault(r["name"], []).append(float(r["millis"]))
    ours_ms = {k: statistics.median(v) for k, v in runs.items()}
    eval_wall, _, err = run_measured(wrap([a.bin, "cohort", "run", "--cdm", cdm, "--index", index,
                                           "--out-dir", rows_dir] + paths))
    eval_rss = max(r for r in (peak_rss(err), count_rss, 0) if r is not None) or None

    # 3. the DuckDB peer
    peer_ms, mismatches, duck_load = {}, [], None
    if not a.no_duckdb:
        import duckdb
        from duckcdm.circe import build_cohort_query
        from duckcdm.sqlrender import render, translate
        con = duckdb.connect()
        t = time.perf_counter()
        for f in sorted(os.listdir(cdm)):
            if f.endswith(".parquet"):
                cols = con.execute(f"describe select * from read_parquet('{cdm}/{f}')").fetchall()
                sel = ", ".join(f'cast("{c[0]}" as date) as "{c[0]}"' if c[0].endswith("_date") else f'"{c[0]}"'
                                for c in cols)
                con.execute(f"create table main.{f[:-8]} as select {sel} from read_parquet('{cdm}/{f}')")
        con.execute("create schema results")
        duck_load = time.perf_counter() - t
        print(f"duckdb: tables loaded in {duck_load:.1f} s")
        sqls = {cid: translate(render(build_cohort_query(open(path).read(), cdm_schema="main",
                                                         target_table="results.cohort", cohort_id=1),
                                      vocabulary_database_schema="main", results_database_schema="results"), "duckdb")
                for cid, path, _ in cohorts}
        peer_runs = {}

        def run_peer(cid):
            """Runs one definition's SQL into an empty results.cohort and records its time."""
            con.execute("create or replace table results.cohort (cohort_definition_id bigint, "
                        "subject_id bigint, cohort_start_date date, cohort_end_date date)")
            t = time.perf_counter()
            con.execute(sqls[cid])
            peer_runs.setdefault(cid, []).append((time.perf_counter() - t) * 1e3)

        for _ in range(a.repeat - 1):
            for cid, _, _ in cohorts:
                run_peer(cid)
        for cid, path, ties in cohorts:
            run_peer(cid)
            peer_ms[cid] = statistics.median(peer_runs[cid])
            theirs = con.execute("select subject_id, strftime(cohort_start_date, '%Y-%m-%d'), "
                                 "strftime(cohort_end_date, '%Y-%m-%d') from results.cohort order by 1, 2, 3").fetchall()
            ours = read_ours(os.path.join(rows_dir, cid + ".csv"))
            if ties:
                # Circe's SQL orders these rows only partially (ties on a date), so the database may pick
                # another row than we do; as in the reference file, only the counts are compared.
                same = len(theirs) == len(ours) and len({r[0] for r in theirs}) == len({r[0] for r in ours})
            else:
                same = [tuple(r) for r in theirs] == ours
            if not same:
                mismatches.append(cid)
            print(f"  {cid}: duckdb {peer_ms[cid]:.0f} ms, ours {ours_ms[cid]:.1f} ms, "
                  f"{'match' if cid not in mismatches else 'DIFFERENT'} ({len(ours)} rows)", flush=True)

    # 4. report
    with open(os.path.join(a.out, "cohort_scale.csv"), "w") as f:
        f.write("cohort,ours_ms,duckdb_ms,speedup,rows_equal\n")
        for cid, _, _ in cohorts:
            d = peer_ms.get(cid)
            f.write(f"{cid},{ours_ms[cid]:.3f},{'' if d is None else f'{d:.1f}'},"
                    f"{'' if d is None else f'{d / max(ours_ms[cid], 1e-3):.1f}'},"
                    f"{'' if d is None else cid not in mismatches}\n")
    print()
    print(f"{'cohort':40} {'ours ms':>10} {'duckdb ms':>10} {'speed-up':>9}")
    for cid, _, _ in cohorts:
        d = peer_ms.get(cid)
        print(f"{cid:40} {ours_ms[cid]:10.1f} {'' if d is None else f'{d:10.0f}'} "
              f"{'' if d is None else f'{d / max(ours_ms[cid], 1e-3):8.0f}x'}")
    o = list(ours_ms.values())
    print()
    print(f"cohorts: {len(o)}")
    print(f"ours:   median {statistics.median(o):.1f} ms, p95 {pct(o, 0.95):.1f} ms, max {max(o):.1f} ms, "
          f"total {sum(o) / 1e3:.1f} s")
    if peer_ms:
        p = list(peer_ms.values())
        ratios = [peer_ms[c] / max(ours_ms[c], 1e-3) for c in peer_ms]
        print(f"duckdb: median {statistics.median(p):.0f} ms, p95 {pct(p, 0.95):.0f} ms, max {max(p):.0f} ms, "
              f"total {sum(p) / 1e3:.1f} s (table load {duck_load:.1f} s)")
        print(f"speed-up: median of per-cohort ratios {statistics.median(ratios):.0f}x, "
              f"min {min(ratios):.0f}x; ratio of medians {statistics.median(p) / statistics.median(o):.0f}x")
        print(f"rows equal to DuckDB's: {len(cohorts) - len(mismatches)} / {len(cohorts)}"
              + (f" (different: {', '.join(mismatches)})" if mismatches else ""))
    if build_load is not None:
        print(f"index build: {build_load:.1f} s, peak RSS {fmt_bytes(build_rss)}")
    print(f"index size on disk: {fmt_bytes(index_size)}")
    print(f"timed passes: {a.repeat} (median per cohort, for us and for DuckDB)")
    print(f"index load: {load_ms / 1e3:.2f} s; `cohort run` of all cohorts: {eval_wall:.1f} s wall, "
          f"peak RSS {fmt_bytes(eval_rss)}")
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
