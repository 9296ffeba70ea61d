"""The `salclass` command. Subcommands only parse arguments and delegate to the
stage packages; their imports are deferred so `salclass --help` stays fast and
one stage's dependencies never slow down another's command.

Bad input raises `salclass.errors.UserError`, printed here as one line with
exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from salclass.errors import Interrupted, UserError, interruption, signal_number
from salclass.run_folder import CHECKPOINT_NAME, CONFIG_NAME, TRUNK_NAME
from salclass.say import say


# --- data: prepare, inspect ------------------------------------------------

def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="pack an ImageNet-layout folder into a shuffled store")
    p.add_argument("src", help="folder with train/<class>/* and/or val/<class>/*")
    p.add_argument("out", help="store folder to write (OUT/<split>/)")
    p.add_argument("--size", type=int, required=True, help="short side and square crop, e.g. 144 or 256")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing complete store")
    p.add_argument("--limit-per-class", type=int, default=None, help="keep at most N images per class (subsets)")
    p.add_argument("--classes", default=None, help="comma-separated class folder names to keep (subsets)")
    p.set_defaults(func=_run_prepare)

    p = sub.add_parser("inspect", help="describe a store split")
    p.add_argument("store", help="a store split folder, e.g. OUT/train")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--verify", action="store_true",
                   help="also read every file and compare it with the checksum recorded when it was written")
    p.set_defaults(func=_run_inspect)


def _run_prepare(a: argparse.Namespace) -> int:
    from salclass.data.prepare import prepare_cli

    return prepare_cli(a.src, a.out, size=a.size, seed=a.seed, workers=a.workers, overwrite=a.overwrite,
                       limit_per_class=a.limit_per_class, classes=a.classes)


def _run_inspect(a: argparse.Namespace) -> int:
    from salclass.data.store import inspect_cli

    return inspect_cli(a.store, as_json=a.json, verify=a.verify)


# --- saliency: pretrain, train, ensemble, eval, predict, show --------------

def _add_saliency_commands(sub: argparse._SubParsersAction) -> None:
    sal = sub.add_parser("saliency", help="saliency models: pretrain, train, ensemble, evaluate, predict into a store, show")
    ssub = sal.add_subparsers(dest="saliency_command", required=True, metavar="COMMAND")

    p = ssub.add_parser("train", help="train a saliency model on eye-fixation data")
    p.add_argument("--data", required=True,
                   help="fixation data folder, any layout `saliency eval` reads (--set read.points=yx etc.)")
    p.add_argument("--model", required=True, help="saliency model name")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", default=None, help="YAML settings file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.set_defaults(func=_run_saliency_train)

    p = ssub.add_parser("pretrain", help="pre-train a saliency model's trunk as a classifier of a store's train split")
    p.add_argument("store", help="store folder (salclass prepare); its train split is read")
    p.add_argument("--out", required=True, help=f"run folder; the trunk is written to OUT/{TRUNK_NAME}")
    p.add_argument("--model", default="fcn", help="saliency model name (default fcn)")
    p.add_argument("--config", default=None, help="YAML settings file (configs/saliency/pretrain.yaml)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(func=_run_saliency_pretrain)

    p = ssub.add_parser("ensemble", help="one saliency model from several trained ones: the mean of their densities")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="saliency checkpoints or run folders, one architecture")
    p.add_argument("--out", required=True, help="the ensemble's checkpoint file (must not exist)")
    p.add_argument("--centre-weight", type=float, default=0.0, metavar="W",
                   help="mix the members' mean density with the fitted centre bias: (1-W)*mean + W*centre bias "
                        "(default 0)")
    p.set_defaults(func=_run_saliency_ensemble)

    p = ssub.add_parser("eval", help="score saliency models with the benchmark metrics")
    p.add_argument("--data", required=True, help="fixation data folder")
    p.add_argument("--split", default="test",
                   help="train, val, test or all: which images (default test): OSIE's recorded split, else the data's split.json or a "
                        "seeded 5:1:2 rule; all = every image, the usual choice for data a model was not trained on")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="CKPT_OR_NAME",
                   help="extra model to score (repeatable); the weight-free baselines are always scored")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="score only the first N images of the split")
    _add_read_options(p)
    p.add_argument("--precision", dest="precisions", action="append", choices=("auto", "fp32", "bf16"), default=None,
                   help="score the models with weights in this precision (repeatable: one row each; default auto)")
    p.add_argument("--versus", default="centre_bias", metavar="CKPT_OR_NAME",
                   help="compare every other model with this one, image by image, with 95%% intervals "
                        "(default centre_bias; e.g. default, to test a new checkpoint against the shipped model)")
    p.set_defaults(func=_run_saliency_eval)

    p = ssub.add_parser("predict", help="write a saliency map for every image of a store")
    p.add_argument("store", help="a store split folder, or a store root with train/ and val/")
    p.add_argument("--model", default="default",
                   help="checkpoint path or model name (default: the shipped six-net ensemble; "
                        "fcn: one of its nets, about 6x faster and weaker)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--overwrite", action="store_true", help="replace maps already in the store")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 where the CPU has native bf16 instructions, else fp32")
    p.set_defaults(func=_run_saliency_predict)

    p = ssub.add_parser("show", help="PNG grid of images with predicted and ground-truth maps")
    p.add_argument("--data", default=None, help="fixation data folder (for ground truth)")
    p.add_argument("--store", default=None, help="or a store split with maps")
    p.add_argument("--model", default="default", help="checkpoint path or model name")
    p.add_argument("--n", type=int, default=8, help="number of images")
    p.add_argument("--out", required=True, help="PNG file to write")
    _add_read_options(p)
    p.set_defaults(func=_run_saliency_show)


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", choices=("xy", "yx"), default="xy",
                   help="column order of fixation point files: xy = (x, y), yx = (row, column) (default xy)")
    p.add_argument("--outside", choices=("error", "drop"), default="error",
                   help="fixation points outside their image: stop with an error (default) or drop them")
    p.add_argument("--ppd", type=float, default=None, metavar="PX",
                   help="pixels per degree of visual angle at the images' own size: ground truth from points is "
                        "blurred one degree wide (default: the data set's own, see docs/saliency-models.md)")


def _run_saliency_train(a: argparse.Namespace) -> int:
    from salclass.saliency.trainer import train_cli

    return train_cli(data=a.data, model=a.model, out=a.out, config=a.config, sets=a.sets, resume=a.resume)


def _run_saliency_pretrain(a: argparse.Namespace) -> int:
    from salclass.saliency.pretrain import pretrain_cli

    return pretrain_cli(store=a.store, out=a.out, model=a.model, config=a.config, sets=a.sets)


def _run_saliency_ensemble(a: argparse.Namespace) -> int:
    from salclass.saliency.models.ensemble import ensemble_cli

    return ensemble_cli(a.checkpoints, a.out, a.centre_weight)


def _run_saliency_eval(a: argparse.Namespace) -> int:
    from salclass.saliency.evaluate import eval_cli

    return eval_cli(data=a.data, split=a.split, models=a.models, as_json=a.json, limit=a.limit,
                    read={"points": a.points, "outside": a.outside, "ppd": a.ppd}, precisions=a.precisions,
                    versus=a.versus)


def _run_saliency_predict(a: argparse.Namespace) -> int:
    from salclass.saliency.predict import predict_cli

    return predict_cli(a.store, model=a.model, batch_size=a.batch_size, overwrite=a.overwrite,
                       precision=a.precision)


def _run_saliency_show(a: argparse.Namespace) -> int:
    from salclass.saliency.show import show_cli

    return show_cli(data=a.data, store=a.store, model=a.model, n=a.n, out=a.out,
                    read={"points": a.points, "outside": a.outside, "ppd": a.ppd})


# --- models: params --------------------------------------------------------

def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="parameter counts of every variant, beside the thesis's figures")
    p.add_argument("--size", type=int, choices=(128, 227), default=128, help="input size (default 128)")
    p.add_argument("--num-classes", type=int, default=1000,
                   help="classes of the last layer (default 1000, ImageNet as in the thesis)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_params)

    p = sub.add_parser("models", help="list the classifier variants")
    p.set_defaults(func=_run_models)


def _run_params(a: argparse.Namespace) -> int:
    from salclass.models.params import params_cli

    if a.num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {a.num_classes}")
    return params_cli(size=a.size, as_json=a.json, num_classes=a.num_classes)


def _run_models(a: argparse.Namespace) -> int:
    from salclass.models import BLOCK_ORDERS, describe_models

    rows = describe_models()
    width = max(len(name) for name, _ in rows)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}")
    print("\nblock order of conv1, conv2 and the fan-in branches (training setting block_order):")
    for name, doc in BLOCK_ORDERS.items():
        print(f"  {name:<8}  {doc}")
    return 0


# --- training: train, evaluate, plot ---------------------------------------

def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one classifier run")
    p.add_argument("--config", default=None, help="YAML settings file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the unfinished run in the out folder (without --config: its own {CONFIG_NAME})")
    p.set_defaults(func=_run_train)

    p = sub.add_parser("evaluate", help="evaluate a run or checkpoint on a store")
    p.add_argument("run", metavar="RUN_OR_CKPT", help=f"a run folder or a {CHECKPOINT_NAME}")
    p.add_argument("--store", required=True, help="a store split with the evaluation images (a store root means its val/)")
    p.add_argument("--out", default=None, help="folder for the results (default: RUN/eval)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_evaluate)

    p = sub.add_parser("plot", help="training curves of one run, or validation top-1 of several")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=_run_plot)


def _run_train(a: argparse.Namespace) -> int:
    from salclass.training.loop import train_cli

    return train_cli(config=a.config, sets=a.sets, resume=a.resume)


def _run_evaluate(a: argparse.Namespace) -> int:
    from salclass.training.evaluate import evaluate_cli

    return evaluate_cli(a.run, store=a.store, out=a.out, as_json=a.json)


def _run_plot(a: argparse.Namespace) -> int:
    from salclass.training.plots import plot_cli

    return plot_cli(a.runs, out=a.out)


# --- study -----------------------------------------------------------------

def _add_study_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run a declared list of experiments and write a report")
    p.add_argument("--config", required=True, help="study YAML, e.g. configs/study/quick.yaml")
    p.add_argument("--out", required=True, help="study folder (runs and report)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.add_argument("--estimate-from", default=None, metavar="DIR",
                   help="only print how long the study would take at the speeds measured by the runs of study DIR")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once, as Ray tasks (default 1: one after another in this process)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run on this Ray cluster (host:port or auto) instead of a local Ray started for the study")
    p.add_argument("--drop-checkpoints", action="store_true",
                   help="delete a run's checkpoint once the run is finished and evaluated, unless a fine-tune of "
                        "the study still has to start from it (the records are kept)")
    p.set_defaults(func=_run_study)

    p = sub.add_parser("report", help="rebuild a study's report from its run folders (or a copy of its records)")
    p.add_argument("dir", help="study folder, or a folder written by salclass records")
    p.add_argument("--out", default=None, help="folder for report.md, report.html and figures/ (default: DIR)")
    p.set_defaults(func=_run_report)

    p = sub.add_parser("records", help="copy a study's records (no checkpoints, no store) to a folder to commit")
    p.add_argument("dir", help="study folder")
    p.add_argument("out", help="records folder: new, empty, or earlier records of the same study (updated)")
    p.set_defaults(func=_run_records)


def _run_study(a: argparse.Namespace) -> int:
    from salclass.study.runner import study_cli

    return study_cli(config=a.config, out=a.out, sets=a.sets, estimate_from=a.estimate_from, jobs=a.jobs,
                     ray_address=a.ray_address, drop_checkpoints=a.drop_checkpoints)


def _run_report(a: argparse.Namespace) -> int:
    from contextlib import ExitStack
    from pathlib import Path

    from salclass.lock import folder_lock
    from salclass.study.report import report_cli

    # The report is written into the study folder (or --out): not while a study writes there.
    with ExitStack() as held:
        if a.out is None or Path(a.out).resolve() == Path(a.dir).resolve():
            held.enter_context(folder_lock(a.dir, exclusive=True))
        else:
            held.enter_context(folder_lock(a.dir, exclusive=False))
            held.enter_context(folder_lock(a.out, exclusive=True))
        return report_cli(a.dir, a.out)


def _run_records(a: argparse.Namespace) -> int:
    from salclass.study.records import records_cli

    return records_cli(a.dir, a.out)


def build_parser() -> argparse.ArgumentParser:
    from salclass import __version__

    parser = argparse.ArgumentParser(prog="salclass", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"salclass {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_saliency_commands(sub)
    _add_model_commands(sub)
    _add_training_commands(sub)
    _add_study_commands(sub)
    return parser


def _stop_on_sigterm(signum, frame):
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM stops a command as Ctrl-C does, wherever it arrives (training installs its own
    # graceful handler for its loops and restores this one after them).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _dispatch(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stopped(e: KeyboardInterrupt) -> int:
    signum = signal_number(e)
    say(f"salclass: stopped by {signal.Signals(signum).name}", every_rank=True)
    return 128 + signum


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        say(f"salclass: error: {e}", every_rank=True)
        return 2
    except KeyboardInterrupt as e:
        # 128 + signal, as a shell reports it.
        return _stopped(e)
    except BrokenPipeError:
        # The reader went away (`salclass inspect ... | head`): not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        from salclass.io import refused_write

        interrupt = interruption(e)
        if interrupt is not None:  # a library turned the interrupt into its own error
            return _stopped(interrupt)
        refused = refused_write(e)
        if refused is None:
            raise
        where = f"{refused.filename}: cannot write" if refused.filename else "cannot write (the file was not named)"
        say(f"salclass: error: {where} ({refused.strerror}); nothing was marked complete", every_rank=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
