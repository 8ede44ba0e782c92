"""Before and after on the CPU: `gpudl bench --device cpu` run alternately by two Python interpreters, each with its
own install of gpudl (say main's and a branch's), at each thread count, for several rounds.

    python benchmarks/cpu_ab.py --before /tmp/main/venv/bin/python --after .venv/bin/python --threads 1 2 \\
        --rounds 3 --filter "lenet5 step [b64]" --filter "lenet5 step [b256]" --filter char-lstm

Every run is its own process, and within it gpudl and PyTorch are timed in blocks after their own warm-up (design.md:
never alternate single steps on 2 cores); the two sides take turns run by run, the first one changing every round, so
that a slow phase of a shared machine falls on both. Prints a Markdown table: for each case and thread count, each
side's median over the rounds of gpudl's median and of PyTorch's, and the median and range of the per-run ratios
gpudl / PyTorch; then how busy the machine was during each run (gpudl bench's contention report).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def bench_once(python, threads, filters, repeat, use_torch):
    """One `gpudl bench` process (run in a scratch folder, so that neither side imports a checkout in the current
    folder): its bench.json as a dict."""
    with tempfile.TemporaryDirectory() as out:
        command = [python, "-m", "gpudl", "bench", "--device", "cpu", "--threads", str(threads), "--repeat",
                   str(repeat), "--out", out] + [arg for f in filters for arg in ("--filter", f)]
        if not use_torch:
            command.append("--no-torch")
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False, cwd=out)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        with open(os.path.join(out, "bench.json"), encoding="utf-8") as f:
            return json.load(f)


def figures(result):
    """{(case key, peer or None): median ms} of one bench.json."""
    return {(f"{r['name']} [{r['size']}]", r["peer"]): r["ms"]["median"] for r in result["results"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the Python interpreter of the 'before' install")
    parser.add_argument("--after", default=sys.executable, help="the Python of the 'after' install (this one)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5, help="gpudl bench --repeat")
    parser.add_argument("--filter", action="append", required=True, help="gpudl bench --filter (repeatable)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    sides = {"before": args.before, "after": args.after}
    runs = {}          # (side, threads) -> [figures of each run]
    busy = []
    for round_ in range(args.rounds):
        for threads in args.threads:
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                result = bench_once(sides[side], threads, args.filter, args.repeat, not args.no_torch)
                runs.setdefault((side, threads), []).append(figures(result))
                contention = result.get("contention") or {}
                busy.append(f"round {round_ + 1}, {threads} thread(s), {side}: {contention.get('detail', '?')}")
                print(f"done: round {round_ + 1}, {threads} thread(s), {side}", file=sys.stderr, flush=True)
    print("| case | threads | gpudl before ms | gpudl after ms | PyTorch ms (before / after runs) | ratio before "
          "(min-max) | ratio after (min-max) |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        keys = [key for key in runs[("after", threads)][0] if key[1] is None]
        for case, _ in keys:
            row = [case, str(threads)]
            ratios, torch_ms = {}, {}
            for side in sides:
                mine = [run[(case, None)] for run in runs[(side, threads)] if (case, None) in run]
                peers = [next((ms for (c, p), ms in run.items() if c == case and p is not None), None)
                         for run in runs[(side, threads)]]
                row.append(f"{statistics.median(mine):.2f}" if mine else "-")
                pairs = [(m, p) for m, p in zip(mine, peers) if p]
                torch_ms[side] = f"{statistics.median(p for _, p in pairs):.2f}" if pairs else "-"
                values = [m / p for m, p in pairs]
                ratios[side] = (f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"
                                if values else "-")
            row += [f"{torch_ms['before']} / {torch_ms['after']}", ratios["before"], ratios["after"]]
            print("| " + " | ".join(row) + " |")
    print()
    for line in busy:
        print(f"- {line}")


if __name__ == "__main__":
    main()
