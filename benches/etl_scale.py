#!/usr/bin/env python3
"""End-to-end ETL benchmark of the Synthea pack, with DuckDB as the peer.

For each scaled Synthea source folder given, it runs the release `omopkit etl` and reports
wall time, source rows per second (from the run report) and peak RSS (from the kernel's
accounting of the child process). In the same run it times DuckDB reading the same CSV files
and writing them as Parquet: the floor for any ETL that must read every row.

Make the data with the scaler in the reference data folder, e.g.
    python3 ../shared/tools/scale_synthea.py <27-patient csv folder> /tmp/s10k 370     # ~10,000 patients
    python3 ../shared/tools/scale_synthea.py <27-patient csv folder> /tmp/s100k 3704   # ~100,000 patients
then
    cargo build --release --bin omopkit
    python3 benches/etl_scale.py --vocab ../shared/data/synthea-source/vocabulary /tmp/s10k /tmp/s100k

Needs `pip install duckdb`.

`--extra-concepts N` runs against a copy of the vocabulary (a folder of `*_seed.csv` files) with N
synthetic standard concepts and their 'Maps to' rows added, spread over the pack's vocabularies:
the cost of a full-size vocabulary (an Athena download has millions of concepts) that the 2,300
concepts of the Synthea seed vocabulary hide. Their codes never occur in the sources.
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time

PACK_FILES = ["patients", "encounters", "conditions", "medications", "immunizations", "observations",
              "procedures", "allergies", "devices", "organizations", "providers"]


def run_omopkit(binary, pack, src, vocab, out, cache):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([binary, "etl", "--mapping", pack, "--source", src, "--vocab", vocab,
                           "--vocab-cache", cache, "--out", out], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"omopkit failed on {src}:\n{proc.stderr}")
    # ru_maxrss of children is the largest child so far (KiB on Linux); each run gets a fresh process.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.load(open(os.path.join(out, "_omopkit", "report.json")))
    rows = sum({s["file"]: s["rows_read"] for s in report["sources"]}.values())
    return wall, rows, peak, max(peak, before) if peak > before else None, report


def run_duckdb(src, out):
    import duckdb
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect()
    t = time.perf_counter()
    for f in PACK_FILES:
        con.execute(f"copy (select * from read_csv('{src}/{f}.csv', all_varchar=true, header=true)) "
                    f"to '{out}/{f}.parquet' (format parquet, compression zstd)")
    return time.perf_counter() - t


def grow_vocabulary(vocab, dest, n):
    """A copy of the seed vocabulary in `vocab` with `n` synthetic concepts that map to themselves."""
    import duckdb
    os.makedirs(dest, exist_ok=True)
    for f in os.listdir(vocab):
        if f.endswith(".csv"):
            shutil.copy(os.path.join(vocab, f), os.path.join(dest, f))
    concept = os.path.join(vocab, "concept_seed.csv")
    rel = os.path.join(vocab, "concept_relationship_seed.csv")
    if not (os.path.exists(concept) and os.path.exists(rel)):
        sys.exit(f"--extra-concepts needs concept_seed.csv and concept_relationship_seed.csv in {vocab}")
    con = duckdb.connect()
    ids = f"select 900000000 + i as id, ['SNOMED','LOINC','RxNorm','CVX','ICD10CM'][i % 5 + 1] as v from range({n}) t(i)"
    con.execute(f"""copy (select * from read_csv('{concept}', all_varchar=true, header=true)
        union all select id::varchar, 'synthetic', 'Observation', v, 'Clinical Finding', 'S', 'X' || id,
                         '1970-01-01', '2099-12-31', null from ({ids}))
        to '{dest}/concept_seed.csv' (header, delimiter ',')""")
    con.execute(f"""copy (select * from read_csv('{rel}', all_varchar=true, header=true)
        union all select id::varchar, id::varchar, 'Maps to', '1970-01-01', '2099-12-31', null from ({ids}))
        to '{dest}/concept_relationship_seed.csv' (header, delimiter ',')""")
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/omopkit")
    ap.add_argument("--pack", default="mappings/synthea")
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--extra-concepts", type=int, default=0,
                    help="add this many synthetic concepts and 'Maps to' rows to a copy of the vocabulary")
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="omopkit-bench-")
    cache = os.path.join(work, "vocab-cache")
    if args.extra_concepts > 0:
        args.vocab = grow_vocabulary(args.vocab, os.path.join(work, "vocab"), args.extra_concepts)
        print(f"vocabulary: {args.extra_concepts:,} synthetic concepts added", flush=True)
    print(f"{'source':<28} {'rows':>12} {'omopkit s':>10} {'rows/s':>12} {'peak RSS MiB':>13} {'duckdb s':>9} {'ratio':>6}")
    try:
        # Warm the vocabulary cache once so every measured run starts the same way.
        run_omopkit(args.bin, args.pack, args.sources[0], args.vocab, os.path.join(work, "warm"), cache)
        for src in args.sources:
            out = os.path.join(work, "cdm")
            # Each measurement in a fresh child so ru_maxrss is that run's own peak.
            code = ("import sys, json; sys.path.insert(0, %r); import etl_scale as b; "
                    "w, r, p, _, _ = b.run_omopkit(%r, %r, %r, %r, %r, %r); print(json.dumps([w, r, p]))"
                    % (os.path.dirname(os.path.abspath(__file__)), args.bin, args.pack, src, args.vocab, out, cache))
            wall, rows, peak = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                                          text=True, check=True).stdout)
            duck = run_duckdb(src, os.path.join(work, "duck"))
            print(f"{os.path.basename(src.rstrip('/')):<28} {rows:>12,} {wall:>10.2f} {rows / wall:>12,.0f} "
                  f"{peak / 1024:>13,.0f} {duck:>9.2f} {wall / duck:>6.2f}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(os.path.join(work, "duck"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
