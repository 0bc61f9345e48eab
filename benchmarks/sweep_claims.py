#!/usr/bin/env python
"""Re-run every notebook that states a claim (`dlbook.core.claim`) over seeds and CPU configurations,
and write the table of what each claim measured: benchmarks/claims.md (for people) and
benchmarks/claims.json (for tests/test_notebooks.py, which checks every bar against it).

    python benchmarks/sweep_claims.py                       # every notebook with a claim, 3 seeds x 3 configurations
    python benchmarks/sweep_claims.py nbs/31_cnn.ipynb      # just these (their rows are replaced, the others kept)
    python benchmarks/sweep_claims.py --offsets 0 --configs native
    python benchmarks/sweep_claims.py --from-logs DIR ...   # no run: rows from the logs of earlier runs (this script's
                                                            # --logdir, or tools/refresh.py --claims-log), replacing
                                                            # those notebooks' rows

Each run executes the whole notebook in a fresh kernel (nbconvert) with
  DLBOOK_SEED_OFFSET = 0, 1, 2       (dlbook.core.run_seed adds it to the notebook's seeds)
  DLBOOK_CLAIMS_LOG  = a log file    (dlbook.core.claim writes each value there instead of asserting)
under each configuration below. A bar is good when it sits below the worst value seen (above, for at_most).
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
OUT_JSON, OUT_MD = ROOT / 'benchmarks' / 'claims.json', ROOT / 'benchmarks' / 'claims.md'
AVX2 = {'ATEN_CPU_CAPABILITY': 'avx2', 'MKL_ENABLE_INSTRUCTIONS': 'AVX2', 'ONEDNN_MAX_CPU_ISA': 'AVX2'}
CONFIGS = {   # name: (environment, runs that may share the machine at once)
    'native': ({}, 1),
    'avx2': (AVX2, 1),
    '1thread': ({'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}, 2),
    'avx2-1thread': (dict(AVX2, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1'), 2),   # .ci/run's second pass on an AVX-512 machine
    'nosimd-1thread': ({'ATEN_CPU_CAPABILITY': 'default', 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}, 2),   # ... on an AVX2-only one
}


def notebooks_with_claims():
    "Course notebooks whose code calls claim(...), except 00_core, where claim is defined and demonstrated."
    out = []
    for p in sorted(NBS.glob('[0-9]*.ipynb')):
        if p.name.startswith('00_'): continue
        cells = json.loads(p.read_text(encoding='utf-8'))['cells']
        if any(c['cell_type'] == 'code' and 'claim(' in ''.join(c['source']) for c in cells): out.append(p)
    return out


def run_one(nb: Path, config: str, offset: int, logdir: Path, timeout: int):
    "Execute `nb` once; return (records, seconds, error or None)."
    env_extra, _ = CONFIGS[config]
    log = logdir / f'{nb.stem}.{config}.{offset}.jsonl'
    env = dict(os.environ, **env_extra, DLBOOK_SEED_OFFSET=str(offset), DLBOOK_CLAIMS_LOG=str(log),
               DLBOOK_NOTEBOOK=nb.name, DLBOOK_CONFIG=config)
    out_nb = logdir / f'{nb.stem}.{config}.{offset}.ipynb'
    cmd = [sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'notebook', '--execute', str(nb), '--output', str(out_nb),
           f'--ExecutePreprocessor.timeout={timeout}']
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=NBS, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    recs = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    err = None if p.returncode == 0 else (p.stderr.strip().splitlines() or ['?'])[-1]
    return recs, dt, err


def summarize(records):
    "Group records by (notebook, claim name) into rows with min / median / max per claim."
    rows = {}
    for r in records:
        row = rows.setdefault((r['notebook'], r['name']), dict(notebook=r['notebook'], name=r['name'], at_least=r['at_least'],
                                                                 at_most=r['at_most'], values=[]))
        row['values'].append(dict(value=r['value'], config=r['config'], seed=r['seed'], ok=r['ok']))
    for row in rows.values():
        v = [x['value'] for x in row['values']]
        row.update(n=len(v), min=min(v), median=statistics.median(v), max=max(v), failures=sum(not x['ok'] for x in row['values']))
    return rows


def keep_other_rows(rows, notebooks):
    "`rows` plus the rows benchmarks/claims.json already holds for notebooks not in `notebooks` (those were not re-run)."
    if OUT_JSON.exists():
        for r in json.loads(OUT_JSON.read_text(encoding='utf-8'))['claims']:
            if r['notebook'] not in notebooks: rows[(r['notebook'], r['name'])] = r
    return rows


def write(rows, meta):
    OUT_JSON.write_text(json.dumps({'meta': meta, 'claims': sorted(rows.values(), key=lambda r: (r['notebook'], r['name']))},
                                   indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    lines = ['# Claims and their measured margins', '',
             'Written by `python benchmarks/sweep_claims.py` (do not edit by hand). Each notebook that states a claim',
             '(`dlbook.core.claim`) was run with seed offsets among ' + ', '.join(map(str, meta['offsets'])) + ' under configurations among these',
             '(the runs column says how many runs each claim had; claims.json lists the configuration and seed of each run):',
             '', *[f'- **{k}**: `{" ".join(f"{a}={b}" for a, b in CONFIGS[k][0].items()) or "the machine as it is"}`' for k in meta['configs']],
             '', f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['date']}.", '',
             '| notebook | claim | bar | runs | min | median | max | failed |', '|---|---|---|---|---|---|---|---|']
    for r in sorted(rows.values(), key=lambda r: (r['notebook'], r['name'])):
        bar = ', '.join(b for b in (r['at_least'] is not None and f"≥ {r['at_least']:g}", r['at_most'] is not None and f"≤ {r['at_most']:g}") if b)
        lines.append(f"| {r['notebook']} | {r['name'].replace('|', chr(92) + '|')} | {bar} | {r['n']} | {r['min']:.4g} | {r['median']:.4g} | {r['max']:.4g} | {r['failures']} |")
    OUT_MD.write_text('\n'.join(lines) + '\n', encoding='utf-8')


def machine():
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, ATen capability {torch.backends.cpu.get_cpu_capability()}", torch.__version__


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('notebooks', nargs='*', type=Path)
    ap.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument('--offsets', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--timeout', type=int, default=900, help='seconds per cell')
    ap.add_argument('--merge', nargs='+', type=Path, metavar='JSON',
                    help="run nothing: combine these claims.json files (later ones win per notebook) into benchmarks/claims.*")
    ap.add_argument('--from-logs', nargs='+', type=Path, metavar='DIR', help='run nothing: build rows from the claim logs in these folders')
    ap.add_argument('--logdir', type=Path, help='where runs write their claim logs and executed notebooks (default: a new temporary folder)')
    a = ap.parse_args(argv)
    if a.from_logs:
        records, configs, offsets = [], set(), set()
        for d in a.from_logs:
            for f in sorted(d.glob('*.jsonl')):
                stem, config, offset = f.name[:-len('.jsonl')].rsplit('.', 2)
                recs = [json.loads(l) for l in f.read_text(encoding='utf-8').splitlines()]
                records += recs; configs.add(config); offsets.add(int(offset))
        rows = keep_other_rows(summarize(records), {r['notebook'] for r in records})
        configs |= {v['config'] for r in rows.values() for v in r['values']}
        m, tv = machine()
        write(rows, dict(configs=sorted(configs), offsets=sorted(offsets), machine=m, torch=tv, date=datetime.date.today().isoformat()))
        print(OUT_MD.read_text()); return
    if a.merge:
        rows, metas = {}, []
        for f in a.merge:
            d = json.loads(f.read_text(encoding='utf-8')); metas.append(d['meta'])
            nbs_here = {r['notebook'] for r in d['claims']}
            rows = {k: r for k, r in rows.items() if r['notebook'] not in nbs_here}
            rows.update({(r['notebook'], r['name']): r for r in d['claims']})
        meta = dict(metas[-1], configs=sorted({c for m in metas for c in m['configs']}),
                    offsets=sorted({o for m in metas for o in m['offsets']}), date=max(m['date'] for m in metas))
        write(rows, meta); print(OUT_MD.read_text()); return
    nbs = [p.resolve() for p in a.notebooks] or notebooks_with_claims()
    logdir = a.logdir or Path(tempfile.mkdtemp(prefix='claims-'))
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"claim logs and executed notebooks go to {logdir}", flush=True)
    records, failed = [], []
    for config in a.configs:
        jobs = [(nb, o) for nb in nbs for o in a.offsets]
        with ThreadPoolExecutor(CONFIGS[config][1]) as pool:
            for (nb, o), (recs, dt, err) in zip(jobs, pool.map(lambda j: run_one(j[0], config, j[1], logdir, a.timeout), jobs)):
                records += recs
                print(f"{nb.name:28s} {config:8s} offset {o}: {len(recs)} claims, {dt:5.0f} s" + (f"  ERROR {err}" if err else ''), flush=True)
                if err: failed.append(f"{nb.name} ({config}, offset {o}): {err}")
    rows = summarize(records)
    if a.notebooks: rows = keep_other_rows(rows, {p.name for p in nbs})
    m, tv = machine()
    write(rows, dict(configs=a.configs, offsets=a.offsets, machine=m, torch=tv, date=datetime.date.today().isoformat()))
    print(OUT_MD.read_text())
    if failed: sys.exit('some runs failed:\n' + '\n'.join(failed))


if __name__ == '__main__':
    main()
