"""Calibration: how often do the study's verdicts call a difference where there is none?

    .venv/bin/python benchmarks/verdicts.py                 # table
    .venv/bin/python benchmarks/verdicts.py --json          # one JSON object
    .venv/bin/python benchmarks/verdicts.py --noise out/noise --record   # re-measure the noise, keep it

It simulates whole null studies: every network of the study (thesis-128's
experiments and comparisons, by default) is drawn from one and the same
distribution of trained networks, so every "better" or "worse" is a false
positive. Each simulated study draws its own validation images, so the null is
"no difference on images like these", not "none on these particular images".
Every simulated comparison goes through salclass.study.stats, the code the
report uses (compare, then decide over the study's family).

The networks' noise is measured, not assumed: --noise names a finished study
that trained one network with several seeds (configs/study/noise.yaml; by
default out/noise, or, where that folder is missing, the measurement recorded
in benchmarks/noise.json by `--record`). From it:
  p     mean top-1 accuracy,
  delta how often two runs of the same network disagree on an image,
  sigma the standard deviation of top-1 over seeds (run-to-run noise).
A simulated image has a probability q of being classified correctly by a
random run, q ~ Beta with mean p and variance p(1-p) - delta/2 (which gives
two independent runs the measured disagreement); a run shifts every image's
logit(q) by u ~ N(0, s^2), with s chosen so that the simulated top-1 varies over
seeds by sigma. `--images`, `--sd`, `--accuracy` and `--disagreement` move the
simulation away from the measured values to see how the rates depend on them.

Printed, for 1, 3 and 5 seeds (--seeds): the share of comparisons that get a
false verdict (as reported, after Holm's adjustment over the family; and for
the raw test at alpha, which shows the test itself is calibrated), the share
of studies with at least one false verdict, and, for contrast, what an
image-only test (McNemar's, pooled over seeds: the rule before 2026-11-29)
would have said.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize, special

from salclass.study import stats
from salclass.study.config import load_study

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STUDY = REPO / "configs" / "study" / "thesis-128.yaml"
DEFAULT_NOISE = REPO / "out" / "noise"
RECORD = Path(__file__).resolve().parent / "noise.json"


def measure_noise(root: Path) -> dict:
    """Mean accuracy, per-image disagreement and run-to-run SD of one network trained with several seeds."""
    from salclass.study.report import load_study_config
    from salclass.study.results import collect

    cfg = load_study_config(root)
    res = collect(root, cfg)
    best = max(res.experiments.values(), key=lambda e: len(e.runs))
    runs = [best.runs[s] for s in sorted(best.runs)]
    if len(runs) < 3:
        sys.exit(f"verdicts: {root} has {len(runs)} finished runs of {best.name}; the noise needs at least 3 "
                 "(salclass study --config configs/study/noise.yaml --out out/noise)")
    correct = np.stack([r.correct1 for r in runs]).astype(np.float64)  # (K, N)
    k, n = correct.shape
    acc = correct.mean(axis=1)
    disagree = [float(np.mean(correct[i] != correct[j])) for i in range(k) for j in range(i + 1, k)]
    where = root.resolve()
    return {"source": str(where.relative_to(REPO)) if where.is_relative_to(REPO) else str(where),
            "experiment": best.name, "seeds": k, "images": n,
            "accuracy": float(acc.mean()), "sd": float(acc.std(ddof=1)), "disagreement": float(np.mean(disagree)),
            "top1_per_seed": [round(100 * float(a), 2) for a in acc]}


class NullWorld:
    """Draws validation sets and trained runs that differ only by chance."""

    def __init__(self, accuracy: float, disagreement: float, sd: float, images: int, rng: np.random.Generator):
        p = accuracy
        var_q = p * (1 - p) - disagreement / 2
        if not 0 < var_q < p * (1 - p):
            raise SystemExit(f"verdicts: disagreement {disagreement:.3f} does not fit accuracy {p:.3f}")
        conc = p * (1 - p) / var_q - 1
        self.a, self.b = p * conc, (1 - p) * conc
        self.images, self.rng = images, rng
        # Shift size s: pick it so that top-1 over seeds has the target SD on average (Bernoulli part included).
        probe = np.random.default_rng(12345)
        q = probe.beta(self.a, self.b, 20000)
        logit_q = special.logit(np.clip(q, 1e-6, 1 - 1e-6))
        u = probe.standard_normal(400)
        binomial_var = float(np.mean(q * (1 - q))) / images

        def sd_for(s: float) -> float:
            acc = special.expit(logit_q[None, :] + s * u[:, None]).mean(axis=1)
            return float(np.sqrt(acc.var(ddof=1) + binomial_var))

        lo = sd_for(0.0)
        self.s = 0.0 if sd <= lo else float(optimize.brentq(lambda s: sd_for(s) - sd, 0.0, 20.0))
        self.binomial_sd = lo

    def validation_set(self) -> np.ndarray:
        q = self.rng.beta(self.a, self.b, self.images)
        return special.logit(np.clip(q, 1e-9, 1 - 1e-9))

    def runs(self, logit_q: np.ndarray, seeds: int) -> np.ndarray:
        u = self.s * self.rng.standard_normal((seeds, 1))
        return self.rng.random((seeds, logit_q.size)) < special.expit(logit_q[None, :] + u)


def simulate(world: NullWorld, experiments: list[str], pairs: list[tuple[str, str]], seeds: int, studies: int,
             alpha: float) -> dict:
    reported = raw = images_only = 0
    fw_reported = fw_raw = fw_images = 0
    sds = []
    for _ in range(studies):
        logit_q = world.validation_set()
        runs = {e: world.runs(logit_q, seeds) for e in experiments}
        sds.append(float(runs[experiments[0]].mean(axis=1).std(ddof=1)) if seeds > 1 else np.nan)
        # The image-only interval of one seed is a bootstrap; its verdict is "none" whatever it says.
        comps = [stats.compare(runs[v], runs[a], resamples=100) for v, a in pairs]
        decided = stats.decide(comps, alpha)
        n_rep = sum(c.verdict in (stats.BETTER, stats.WORSE) for c in decided)
        n_raw = sum(c.can_decide and c.p < alpha for c in decided)
        n_img = sum(c.mcnemar.p < alpha for c in decided)
        reported, raw, images_only = reported + n_rep, raw + n_raw, images_only + n_img
        fw_reported += n_rep > 0
        fw_raw += n_raw > 0
        fw_images += n_img > 0
    total = studies * len(pairs)
    return {"seeds": seeds, "studies": studies, "comparisons": total,
            "false_positive_rate": reported / total, "false_positive_rate_unadjusted": raw / total,
            "false_positive_rate_images_only": images_only / total,
            "familywise_rate": fw_reported / studies, "familywise_rate_unadjusted": fw_raw / studies,
            "familywise_rate_images_only": fw_images / studies,
            "simulated_sd": float(np.nanmean(sds)) if seeds > 1 else None,
            "standard_error": float(np.sqrt(alpha * (1 - alpha) / total))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", type=Path, default=DEFAULT_NOISE,
                    help="finished study with one network over several seeds (default out/noise)")
    ap.add_argument("--study", type=Path, default=DEFAULT_STUDY, help="study config whose comparisons to simulate")
    ap.add_argument("--seeds", default="1,3,5", help="seed counts to simulate (default 1,3,5)")
    ap.add_argument("--studies", type=int, default=200, help="simulated null studies per seed count (default 200)")
    ap.add_argument("--images", type=int, help="validation images per study (default: as measured)")
    ap.add_argument("--sd", type=float, help="run-to-run SD of top-1 in points (default: as measured)")
    ap.add_argument("--accuracy", type=float, help="mean top-1 in percent (default: as measured)")
    ap.add_argument("--disagreement", type=float,
                    help="percent of images two runs disagree on (default: as measured)")
    ap.add_argument("--record", action="store_true", help=f"save the noise measured on --noise to {RECORD.name}")
    ap.add_argument("--rng", type=int, default=0, help="seed of the simulation")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    if (a.noise / "study.yaml").is_file():
        noise = measure_noise(a.noise)
        if a.record:
            RECORD.write_text(json.dumps(noise, indent=1) + "\n")
    elif a.noise == DEFAULT_NOISE and not a.record and RECORD.is_file():
        noise = json.loads(RECORD.read_text())
        noise["source"] = f"{RECORD.name} (recorded from {noise['source']})"
    else:
        sys.exit(f"verdicts: {a.noise} is not a finished noise study; run "
                 f"`salclass study --config configs/study/noise.yaml --out {a.noise}` first (about 10 minutes)")
    cfg = load_study(a.study)
    experiments = [e.name for e in cfg.experiments]
    pairs = [(p.variant, p.against) for p in cfg.pairs()]
    images = a.images or noise["images"]
    sd = (a.sd / 100 if a.sd is not None else noise["sd"])
    accuracy = (a.accuracy / 100 if a.accuracy is not None else noise["accuracy"])
    disagreement = a.disagreement / 100 if a.disagreement is not None else noise["disagreement"]
    world = NullWorld(accuracy, disagreement, sd, images, np.random.default_rng(a.rng))
    t0 = time.perf_counter()
    rows = [simulate(world, experiments, pairs, int(k), a.studies, cfg.alpha) for k in a.seeds.split(",")]
    out = {
        "noise": noise,
        "simulation": {"study": cfg.name, "experiments": len(experiments), "comparisons_per_study": len(pairs),
                       "alpha": cfg.alpha, "images": images, "accuracy": accuracy, "sd": sd,
                       "disagreement": disagreement, "run_shift_s": world.s, "rng": a.rng,
                       "seconds": time.perf_counter() - t0, "load_average": os.getloadavg()},
        "rows": rows,
        "false_positive_rate": {str(r["seeds"]): r["false_positive_rate"] for r in rows},
        "familywise_rate": {str(r["seeds"]): r["familywise_rate"] for r in rows},
    }
    if a.json:
        print(json.dumps(out))
        return 0
    n = noise
    print(f"Noise measured on {n['source']}: {n['experiment']} with {n['seeds']} seeds on {n['images']} validation "
          f"images: top-1 {100 * n['accuracy']:.1f}% (per seed {n['top1_per_seed']}), run-to-run SD "
          f"{100 * n['sd']:.2f} points, two runs disagree on {100 * n['disagreement']:.1f}% of the images.")
    print(f"Simulated: {a.studies} null studies per seed count shaped like {cfg.name} ({len(experiments)} experiments, "
          f"{len(pairs)} comparisons each), {images} images, top-1 {100 * accuracy:.1f}%, run-to-run SD "
          f"{100 * sd:.2f} points, disagreement {100 * disagreement:.1f}%, alpha {cfg.alpha:g}; "
          f"{out['simulation']['seconds']:.0f} s, load average "
          f"{os.getloadavg()[0]:.1f}.")
    print()
    head = ["seeds", "comparisons", "false verdicts (reported, Holm)", "raw test at alpha",
            "image-only McNemar", "studies with >= 1 false verdict (reported)", "(raw test)", "(image-only)"]
    print(" | ".join(head))
    for r in rows:
        raw = "no test" if r["seeds"] == 1 else f"{r['false_positive_rate_unadjusted']:.4f}"
        fw_raw = "no test" if r["seeds"] == 1 else f"{r['familywise_rate_unadjusted']:.3f}"
        print(" | ".join([str(r["seeds"]), str(r["comparisons"]), f"{r['false_positive_rate']:.4f}", raw,
                          f"{r['false_positive_rate_images_only']:.4f}", f"{r['familywise_rate']:.3f}", fw_raw,
                          f"{r['familywise_rate_images_only']:.3f}"]))
    print(f"\nSimulation error of a rate near alpha: about +-{2 * rows[0]['standard_error']:.4f} (2 standard errors).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
