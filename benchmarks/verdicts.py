"""Calibration and power: how often do the study's verdicts call a difference where there is none, and how
large must a real one be to be found?

    nice python benchmarks/verdicts.py                 # tables (every scenario below)
    nice python benchmarks/verdicts.py --json          # one JSON object
    nice python benchmarks/verdicts.py --noise out/noise --record   # re-measure the noise, keep it

It simulates whole null studies: every network of a study is drawn from one and
the same distribution of trained networks, so every "better" or "worse" is a
false positive. Each simulated study draws its own validation images, so the
null is "no difference on images like these", not "none on these particular
images". Every simulated comparison goes through salclass.study.stats, the code
the report uses (compare, the family step of the verdict test, then decide over
the study's family), once with each verdict test (`verdict_test: moderated`, the
default, and `seeds-images`) on the same simulated runs.

The networks' noise is measured, not assumed: --noise names a finished study
with several seeds of one network or more (configs/study/noise.yaml; by
default out/noise, or, where that folder is missing, the measurement recorded
in benchmarks/noise.json by `--record`). From it, over every network with
several finished seeds:
  p     mean top-1 accuracy,
  delta how often two runs of the same network disagree on an image,
  sigma the standard deviation of top-1 over seeds (run-to-run noise), pooled:
        each network's spread around its own mean, with its 95% interval.
A simulated image has a probability q of being classified correctly by a
random run, q ~ Beta with mean p and variance p(1-p) - delta/2 (which gives
two independent runs the measured disagreement); a run shifts every image's
logit(q) by u ~ N(0, s^2), with s chosen so that the simulated top-1 varies over
seeds by sigma. A network-spread T gives every network its own per-image
strengths (each image's logit(q) moved by N(0, T^2) per network, the same for
all its seeds), so that two networks of equal accuracy still differ image by
image.

The scenarios (all by default; --scenarios picks some):
  measured          thesis-128's family (23 experiments, 33 comparisons) at the measured noise (120 images)
  unequal-noise     the same, each network's run-to-run SD drawn (per study) from {1x, 3x} the measured SD
  headline          configs/study/headline.yaml's family (7 experiments, 9 comparisons) at the size of all
                    of Imagenette, with assumed noise: 3,925 images, 80% top-1, 12% disagreement, SD 1 point
  headline-unequal  the same, each network's SD drawn from {1x, 3x}
  small-N           headline's family at the measured noise (120 images)
Any of --study, --images, --sd, --accuracy, --disagreement, --network-spread,
--sd-ratio replaces them with one "custom" scenario: the measured noise with
those settings changed.

Printed, for each scenario and seed count (--seeds; 1 seed gives no verdict by
rule): for each test the share of comparisons that get a false verdict (as
reported, after Holm's adjustment over the family; and the raw test at alpha,
which shows the test itself is calibrated), and the share of studies with at
least one false verdict; and, for contrast, what an image-only test (McNemar's,
pooled over seeds) would have said.

Power (the measured and headline scenarios, --power-seeds): one comparison of
a null study gets a real difference (its variant's logit(q) raised on every
image by the amount that raises its expected top-1 by D points; the variant is
the one in the fewest comparisons, and every comparison it is in becomes real).
For each simulated study the smallest D whose comparison gets "better" after
Holm is found by bisection on the same random draws; the 80th percentile over
studies is the smallest true difference detected in 80% of studies, with an
order-statistic 95% range.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from salclass.study import moderation, stats
from salclass.study.config import load_study
from salclass.say import counted

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "configs" / "study"
DEFAULT_NOISE = REPO / "out" / "noise"
RECORD = Path(__file__).resolve().parent / "noise.json"
TESTS = (stats.TEST_MODERATED, stats.TEST_SEEDS_IMAGES)
DEFAULT_TEST = stats.TEST_MODERATED
# What the headline scenarios assume for all of Imagenette (not measured on this machine).
FULL_SIZE = {"images": 3925, "accuracy": 0.80, "disagreement": 0.12, "sd": 0.010}


def sd_range95(sd: float, df: int) -> list[float]:
    """The 95% interval of a normal SD estimated as `sd` with `df` degrees of freedom (chi-square)."""
    return [sd * math.sqrt(df / sps.chi2.ppf(0.975, df)), sd * math.sqrt(df / sps.chi2.ppf(0.025, df))]


def measure_noise(root: Path) -> dict:
    """Mean accuracy, per-image disagreement and run-to-run SD of top-1, pooled over every network of a
    finished study that has several finished seeds: each network's spread around its own mean, since
    networks differ in accuracy, and two runs disagree only within a network."""
    from salclass.study.folder import load_study_config
    from salclass.study.results import collect

    cfg = load_study_config(root)
    res = collect(root, cfg)
    nets = {e.name: [e.runs[s] for s in sorted(e.runs)] for e in res.experiments.values() if len(e.runs) >= 2}
    df = sum(len(runs) - 1 for runs in nets.values())
    if df < 2:
        sys.exit(f"verdicts: {root} has too few finished seeds to measure the noise (at least 3 of one network, "
                 "or 2 of two; salclass study --config configs/study/noise.yaml --out out/noise)")
    squares, accuracies, disagree, per_seed = 0.0, [], [], {}
    for name, runs in nets.items():
        correct = np.stack([r.correct1 for r in runs]).astype(np.float64)  # (K, N)
        acc = correct.mean(axis=1)
        squares += float(np.sum((acc - acc.mean()) ** 2))
        accuracies += acc.tolist()
        disagree += [float(np.mean(correct[i] != correct[j])) for i in range(len(runs)) for j in range(i)]
        per_seed[name] = [round(100 * float(a), 2) for a in acc]
    where = root.resolve()
    return {"source": str(where.relative_to(REPO)) if where.is_relative_to(REPO) else str(where),
            "experiments": per_seed, "df": df, "images": int(correct.shape[1]),
            "accuracy": float(np.mean(accuracies)), "sd": math.sqrt(squares / df),
            "disagreement": float(np.mean(disagree))}


@dataclass
class Scenario:
    name: str
    study: str  # a config under configs/study, or a path
    images: int
    accuracy: float
    disagreement: float
    sd: float  # run-to-run SD of top-1 (fraction)
    sd_ratio: float = 1.0  # > 1: each network's SD is sd or sd_ratio * sd, half and half
    network_spread: float = 0.0
    power: bool = False


def scenarios(noise: dict) -> list[Scenario]:
    m = {"images": noise["images"], "accuracy": noise["accuracy"], "disagreement": noise["disagreement"],
         "sd": noise["sd"]}
    return [Scenario("measured", "thesis-128", **m, power=True),
            Scenario("unequal-noise", "thesis-128", **m, sd_ratio=3.0),
            Scenario("headline", "headline", **FULL_SIZE, power=True),
            Scenario("headline-unequal", "headline", **FULL_SIZE, sd_ratio=3.0),
            Scenario("small-N", "headline", **m)]


class World:
    """Draws validation sets and trained networks that differ only by chance (or by a planted gain)."""

    def __init__(self, sc: Scenario):
        p = sc.accuracy
        var_q = p * (1 - p) - sc.disagreement / 2
        if not 0 < var_q < p * (1 - p):
            raise SystemExit(f"verdicts: disagreement {sc.disagreement:.3f} does not fit accuracy {p:.3f}")
        conc = p * (1 - p) / var_q - 1
        self.a, self.b = p * conc, (1 - p) * conc
        self.images, self.network_spread = sc.images, sc.network_spread
        probe = np.random.default_rng(12345)
        q = probe.beta(self.a, self.b, 20000)
        self._probe_logit = special.logit(np.clip(q, 1e-6, 1 - 1e-6))
        self._probe_u = probe.standard_normal(400)
        self._binomial_var = float(np.mean(q * (1 - q))) / sc.images
        self.binomial_sd = self._sd_for(0.0)
        self.s_low = self.shift_for(sc.sd)
        self.s_high = self.shift_for(sc.sd * sc.sd_ratio) if sc.sd_ratio != 1.0 else self.s_low
        self._gain_table: tuple[np.ndarray, np.ndarray] | None = None

    def _sd_for(self, s: float) -> float:
        acc = special.expit(self._probe_logit[None, :] + s * self._probe_u[:, None]).mean(axis=1)
        return float(np.sqrt(acc.var(ddof=1) + self._binomial_var))

    def shift_for(self, sd: float) -> float:
        """The SD of the per-run logit shift that gives top-1 over seeds the SD `sd` (Bernoulli part included)."""
        if sd <= self.binomial_sd:
            return 0.0
        return float(optimize.brentq(lambda s: self._sd_for(s) - sd, 0.0, 20.0))

    def study(self, rng: np.random.Generator, experiments: list[str], seeds: int) -> dict[str, tuple]:
        """One study's networks: per network its (seeds, images) logits and the uniforms that decide each image."""
        logit_q = special.logit(np.clip(rng.beta(self.a, self.b, self.images), 1e-9, 1 - 1e-9))
        out = {}
        for e in experiments:
            s = self.s_low if rng.random() < 0.5 else self.s_high
            mine = logit_q + self.network_spread * rng.standard_normal(self.images)
            logits = mine[None, :] + s * rng.standard_normal((seeds, 1))
            out[e] = (logits, rng.random((seeds, self.images)))
        return out

    def gain_offset(self, delta: float) -> float:
        """The logit shift that raises a network's expected top-1 by `delta` (fraction), at the low noise."""
        if self._gain_table is None:
            lq = self._probe_logit[:2000, None]
            if self.network_spread:
                lq = lq + self.network_spread * np.random.default_rng(7).standard_normal((2000, 1))
            base = lq + self.s_low * self._probe_u[None, :100]
            offsets = np.linspace(0.0, 12.0, 241)
            acc0 = special.expit(base).mean()
            gains = np.array([special.expit(base + c).mean() - acc0 for c in offsets])
            self._gain_table = (gains, offsets)
        gains, offsets = self._gain_table
        return float(np.interp(delta, gains, offsets))

    @property
    def max_gain(self) -> float:
        self.gain_offset(0.0)
        return float(self._gain_table[0][-1])


def correct(net: tuple, offset: float = 0.0) -> np.ndarray:
    logits, uniforms = net
    return uniforms < special.expit(logits + offset)


def _rng(root: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([root, *key])


def _verdicts(comps: list[stats.Comparison], alpha: float) -> dict[str, list[stats.Comparison]]:
    return {t: stats.decide(moderation.family_test(comps, t), alpha) for t in TESTS}


def simulate(world: World, experiments: list[str], pairs: list[tuple[str, str]], seeds: int, studies: int,
             alpha: float, rng_root: int) -> dict:
    counts = {t: {"reported": 0, "raw": 0, "fw_reported": 0, "fw_raw": 0} for t in TESTS}
    images_only = fw_images = floor_binds = zero_variance = 0
    prior_df = []
    for j in range(studies):
        nets = world.study(_rng(rng_root, seeds, j), experiments, seeds)
        runs = {e: correct(net) for e, net in nets.items()}
        # The image-only interval of one seed is a bootstrap that no rate here reads (its verdict is "none"
        # whatever it says): one resample keeps its cost out of the simulation.
        comps = [stats.compare(runs[v], runs[a], resamples=1) for v, a in pairs]
        for t, decided in _verdicts(comps, alpha).items():
            n_rep = sum(c.verdict in (stats.BETTER, stats.WORSE) for c in decided)
            n_raw = sum(c.can_decide and c.p < alpha for c in decided)
            n = counts[t]
            n["reported"] += n_rep
            n["raw"] += n_raw
            n["fw_reported"] += n_rep > 0
            n["fw_raw"] += n_raw > 0
            if t == stats.TEST_MODERATED and decided[0].prior is not None:
                prior_df.append(decided[0].prior.df)
        n_img = sum(c.mcnemar.p < alpha for c in comps)
        images_only += n_img
        fw_images += n_img > 0
        for c in comps:
            noise = c.top1.noise
            if noise is not None:
                floor_binds += noise.seed_var < noise.floor
                zero_variance += noise.seed_var == 0.0 and noise.image_var == 0.0
    total = studies * len(pairs)
    row = {"seeds": seeds, "studies": studies, "comparisons": total}
    for t, n in counts.items():
        row[t] = {"false_positive_rate": n["reported"] / total, "false_positive_rate_unadjusted": n["raw"] / total,
                  "familywise_rate": n["fw_reported"] / studies, "familywise_rate_unadjusted": n["fw_raw"] / studies}
    row["images_only"] = {"false_positive_rate": images_only / total, "familywise_rate": fw_images / studies}
    # Comparisons whose own per-seed variance fell below the floor, and those that were exactly zero with no
    # image part (p = 0 before the floor existed).
    row["floor_binds"] = floor_binds / total
    row["zero_variance"] = zero_variance / total
    if prior_df:
        d0 = np.asarray(prior_df)
        row["prior_df_median"] = float(np.median(d0))
        row["prior_df_infinite"] = float(np.mean(np.isinf(d0)))
    return row


def planted_pair(pairs: list[tuple[str, str]]) -> int:
    """The comparison whose variant takes part in the fewest comparisons (the first such)."""
    def uses(e):
        return sum(e in p for p in pairs)
    return min(range(len(pairs)), key=lambda i: (uses(pairs[i][0]), i))


def power(world: World, experiments: list[str], pairs: list[tuple[str, str]], seeds: int, studies: int,
          alpha: float, rng_root: int, target: float = 0.8, steps: int = 7) -> dict:
    k = planted_pair(pairs)
    planted = pairs[k][0]
    touched = [i for i, p in enumerate(pairs) if planted in p]
    top = world.max_gain
    thresholds = {t: [] for t in TESTS}
    for j in range(studies):
        nets = world.study(_rng(rng_root, 1000 + seeds, j), experiments, seeds)
        runs = {e: correct(net) for e, net in nets.items()}
        comps = [stats.compare(runs[v], runs[a], resamples=1) for v, a in pairs]

        def detected(delta: float, test: str) -> bool:
            runs[planted] = correct(nets[planted], world.gain_offset(delta))
            for i in touched:
                v, a = pairs[i]
                comps[i] = stats.compare(runs[v], runs[a], resamples=1)
            return stats.decide(moderation.family_test(comps, test), alpha)[k].verdict == stats.BETTER

        for t in TESTS:
            if not detected(top, t):
                thresholds[t].append(np.inf)
                continue
            lo, hi = 0.0, top
            if detected(lo, t):
                thresholds[t].append(0.0)
                continue
            for _ in range(steps):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if detected(mid, t) else (mid, hi)
            thresholds[t].append(hi)
    # Order statistics around the target quantile: a 95% range for it.
    half = 1.96 * np.sqrt(studies * target * (1 - target))
    i_lo, i_hi = int(np.floor(studies * target - half)), int(np.ceil(studies * target + half))
    out = {"comparison": f"{pairs[k][0]} vs {pairs[k][1]}", "comparisons_made_real": len(touched),
           "studies": studies, "target": target, "max_difference": 100 * top}
    for t, th in thresholds.items():
        th = np.sort(np.asarray(th))
        q = float(np.quantile(th, target, method="inverted_cdf"))
        out[t] = {"points": None if np.isinf(q) else 100 * q,
                  "range95": [None if np.isinf(x) else 100 * float(x)
                              for x in (th[max(0, i_lo - 1)], th[min(studies - 1, i_hi - 1)])],
                  "detected_at_max": float(np.mean(np.isfinite(th)))}
    return out


def _study_path(name: str) -> Path:
    p = Path(name)
    return p if p.suffix in (".yaml", ".yml") else STUDIES / f"{name}.yaml"


def _rate(x: float) -> str:
    return f"{x:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", type=Path, default=DEFAULT_NOISE,
                    help="finished study with several seeds of one network or more (default out/noise)")
    ap.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    ap.add_argument("--seeds", default="1,2,3,5", help="seed counts to simulate (default 1,2,3,5)")
    ap.add_argument("--studies", type=int, default=200,
                    help="simulated null studies per scenario and seed count (default 200)")
    ap.add_argument("--power-seeds", default="3,5", help="seed counts of the power search (default 3,5; '' for none)")
    ap.add_argument("--power-studies", type=int, default=40, help="simulated studies per power search (default 40)")
    ap.add_argument("--study", help="custom scenario: study config whose comparisons to simulate")
    ap.add_argument("--images", type=int, help="custom scenario: validation images per study")
    ap.add_argument("--sd", type=float, help="custom scenario: run-to-run SD of top-1 in points")
    ap.add_argument("--accuracy", type=float, help="custom scenario: mean top-1 in percent")
    ap.add_argument("--disagreement", type=float, help="custom scenario: percent of images two runs disagree on")
    ap.add_argument("--network-spread", type=float, help="custom scenario: SD of each network's own per-image "
                                                         "logit shifts")
    ap.add_argument("--sd-ratio", type=float, help="custom scenario: each network's SD is --sd or this times it")
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
    noise["sd_range95"] = sd_range95(noise["sd"], noise["df"])

    custom = {k: getattr(a, k) for k in ("study", "images", "sd", "accuracy", "disagreement", "network_spread",
                                          "sd_ratio") if getattr(a, k) is not None}
    if custom:
        sc = Scenario("custom", custom.get("study", "thesis-128"), custom.get("images", noise["images"]),
                      custom["accuracy"] / 100 if "accuracy" in custom else noise["accuracy"],
                      custom["disagreement"] / 100 if "disagreement" in custom else noise["disagreement"],
                      custom["sd"] / 100 if "sd" in custom else noise["sd"],
                      custom.get("sd_ratio", 1.0), custom.get("network_spread", 0.0), power=True)
        chosen = [sc]
    else:
        chosen = scenarios(noise)
        if a.scenarios:
            wanted = a.scenarios.split(",")
            unknown = sorted(set(wanted) - {s.name for s in chosen})
            if unknown:
                sys.exit(f"verdicts: unknown scenario {unknown[0]!r}; choose from "
                         f"{', '.join(s.name for s in chosen)}")
            chosen = [s for s in chosen if s.name in wanted]
    seed_counts = [int(k) for k in a.seeds.split(",")]
    power_seeds = [int(k) for k in a.power_seeds.split(",") if k]

    t0 = time.perf_counter()
    results = {}
    for i, sc in enumerate(chosen):
        cfg = load_study(_study_path(sc.study))
        experiments = [e.name for e in cfg.experiments]
        pairs = [(p.variant, p.against) for p in cfg.pairs()]
        world = World(sc)
        started = time.perf_counter()
        rows = [simulate(world, experiments, pairs, k, a.studies, cfg.alpha, a.rng * 100 + i) for k in seed_counts]
        pw = {}
        if sc.power:
            pw = {str(k): power(world, experiments, pairs, k, a.power_studies, cfg.alpha, a.rng * 100 + i)
                  for k in power_seeds}
        results[sc.name] = {
            "settings": {**asdict(sc), "study": cfg.name, "experiments": len(experiments),
                         "comparisons_per_study": len(pairs), "alpha": cfg.alpha, "run_shift_s": world.s_low,
                         "run_shift_s_high": world.s_high},
            "rows": rows, "power": pw, "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - t0

    def by_seeds(name: str, key: str) -> dict:
        return {str(r["seeds"]): r[DEFAULT_TEST][key] for r in results[name]["rows"]}

    out = {
        "noise": noise,
        "default_test": DEFAULT_TEST,
        "simulation": {"studies": a.studies, "power_studies": a.power_studies, "rng": a.rng, "seconds": seconds,
                       "load_average": os.getloadavg()},
        "scenarios": results,
        # The default test's rates, scenario -> seed count -> rate, as reported (Holm).
        "false_positive_rate": {n: by_seeds(n, "false_positive_rate") for n in results},
        "familywise_rate": {n: by_seeds(n, "familywise_rate") for n in results},
        # Smallest true top-1 difference (points) found in 80% of studies: scenario -> seeds -> test -> points.
        "power": {n: {k: {t: v[t]["points"] for t in TESTS} for k, v in r["power"].items()}
                  for n, r in results.items() if r["power"]},
    }
    if a.json:
        print(json.dumps(out))
        return 0

    n = noise
    seeds = ", ".join(f"{name} {v}" for name, v in n["experiments"].items())
    lo, hi = n["sd_range95"]
    print(f"Noise measured on {n['source']} ({n['images']} validation images), top-1 % per seed: {seeds}. "
          f"Mean top-1 {100 * n['accuracy']:.1f}%; run-to-run SD {100 * n['sd']:.2f} points, pooled over "
          f"{counted(len(n['experiments']), 'network')} with {n['df']} degrees of freedom (95% interval {100 * lo:.2f} to "
          f"{100 * hi:.2f}); two runs of a network disagree on {100 * n['disagreement']:.1f}% of the images.")
    print(f"{a.studies} null studies per scenario and seed count, {a.power_studies} per power search; default "
          f"test {DEFAULT_TEST}; {seconds:.0f} s, load average {os.getloadavg()[0]:.1f}.")
    for name, r in results.items():
        s = r["settings"]
        spread = f", each network's SD {100 * s['sd']:.2f} or {100 * s['sd'] * s['sd_ratio']:.2f}" \
            if s["sd_ratio"] != 1.0 else ""
        print(f"\n## {name}: {s['study']} ({s['experiments']} experiments, {s['comparisons_per_study']} comparisons), "
              f"{s['images']} images, top-1 {100 * s['accuracy']:.1f}%, run-to-run SD {100 * s['sd']:.2f} points"
              f"{spread}, disagreement {100 * s['disagreement']:.1f}%, network spread {s['network_spread']:g}")
        print("seeds | test | false verdicts per comparison (Holm) | raw test at alpha | studies with >= 1 false "
              "verdict | (raw test) | floor binds | zero variance | median prior df")
        for row in r["rows"]:
            for t in TESTS:
                x = row[t]
                if row["seeds"] == 1:
                    cells = [_rate(x["false_positive_rate"]), "no test", f"{x['familywise_rate']:.3f}", "no test"]
                else:
                    cells = [_rate(x["false_positive_rate"]), _rate(x["false_positive_rate_unadjusted"]),
                             f"{x['familywise_rate']:.3f}", f"{x['familywise_rate_unadjusted']:.3f}"]
                extra = ["", "", ""]
                if t == DEFAULT_TEST and row["seeds"] > 1:
                    extra = [f"{row['floor_binds']:.3f}", f"{row['zero_variance']:.4f}",
                             f"{row.get('prior_df_median', float('nan')):.1f}"]
                print(" | ".join([str(row["seeds"]), t, *cells, *extra]))
            print(" | ".join([str(row["seeds"]), "image-only McNemar", _rate(row["images_only"]["false_positive_rate"]),
                              "", f"{row['images_only']['familywise_rate']:.3f}", "", "", "", ""]))
        for k, p in r["power"].items():
            def fmt(v):
                if v["points"] is None:
                    return f"not reached by {p['max_difference']:.1f} (found in {100 * v['detected_at_max']:.0f}%)"
                lo, hi = ("-" if x is None else f"{x:.1f}" for x in v["range95"])
                return f"{v['points']:.1f} points (95% range {lo} to {hi})"
            print(f"power, {k} seeds, {p['comparison']}: " + "; ".join(f"{t} {fmt(p[t])}" for t in TESTS))
    se = np.sqrt(0.05 * 0.95 / a.studies)
    print(f"\nSimulation error of a study-wise rate near 0.05: about +-{2 * se:.3f} (2 standard errors).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
