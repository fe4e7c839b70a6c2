"""Command line: ``python -m lab_utils {prefetch,check,train,info,cache,setup-jupyter}``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from .config import BATCHING_MODES, LoRAConfig, TrainConfig
from .errors import ConfigError, LabError

REFERENCE_TEXTS = (  # the teaching case of TP3 (see the notebooks)
    "There is a big cash prize for you, call immediately.",
    "Hey, are we still meeting for lunch tomorrow?",
    "Hytale beta keys are finally out! Click here to claim yours before they are all gone.",
)


def cmd_prefetch(args) -> int:
    """Download what is missing (every piece tried), then one list of what is still missing."""
    from .preflight import fetch_missing, report

    pieces = fetch_missing(args.profile, weights=not args.no_weights)
    ok = all(p.ok for p in pieces)
    print(report(pieces, args.profile, downloaded=True), file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_check(args) -> int:
    """What the profile needs, verified, without any download."""
    from .preflight import check, report

    pieces = check(args.profile, suggest_ci=not args.grading)
    ok = all(p.ok for p in pieces)
    if not (ok and args.quiet):
        print(report(pieces, args.profile), file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_train(args) -> None:
    from .classify import classify_texts
    from .data import SPLIT_NAMES, load_splits
    from .french import fr_number, fr_percent
    from .loaders import eval_loader, make_datasets, train_loader
    from .plots import plot_accuracies, plot_loss
    from .profiles import get_profile
    from .run import build_classifier, save_run
    from .tokenizer import get_tokenizer
    from .train import evaluate_splits, train_classifier
    from . import __version__, thresholds

    if bool(args.thresholds_out) != bool(args.instructor_texts):
        raise ConfigError("--thresholds-out et --instructor-texts vont ensemble : les seuils reposent sur "
                          "l'exactitude de test et sur les messages de l'enseignant.")
    instructor = thresholds.read_instructor_texts(args.instructor_texts) if args.instructor_texts else None
    profile = get_profile(args.profile)
    cfg = TrainConfig(num_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      batching=args.batching, precision=args.precision, eval_every=args.eval_every)
    lora = LoRAConfig(rank=args.rank, alpha=args.alpha)
    run_dir = Path(args.run_dir or Path("runs") / datetime.now().strftime(f"%Y%m%d-%H%M%S-{profile.name}"))
    print(f"Profil {profile.name} : {profile.description}")

    start = time.perf_counter()
    tokenizer = get_tokenizer()
    datasets = make_datasets(load_splits(), tokenizer, profile.gpt_config.context_length)
    print("Données :", ", ".join(f"{SPLIT_NAMES[k]} {fr_number(len(v))}" for k, v in datasets.items()))
    model, report = build_classifier(profile, lora, seed=cfg.seed)
    print(report)
    history = train_classifier(model, train_loader(datasets["train"], cfg),
                               eval_loader(datasets["val"], cfg.eval_tokens), cfg)
    print(f"Entraînement : {fr_number(history.num_batches)} lots en {fr_number(history.seconds, 1)} s, perte "
          f"{fr_number(history.batch_losses[0], 4)} -> {fr_number(history.batch_losses[-1], 4)}, exactitude "
          f"courante {fr_percent(history.final_running_train_acc)}")
    loaders = {k: eval_loader(v, cfg.eval_tokens) for k, v in datasets.items()}
    results = evaluate_splits(model, loaders, precision=cfg.precision)
    metrics = {k: {"accuracy": r.accuracy, "loss": r.loss, "n": r.n} for k, r in results.items()}
    for name, r in results.items():
        print(f"  exactitude {SPLIT_NAMES[name]:12s} : {fr_percent(r.accuracy)}  (perte {fr_number(r.loss, 4)}, "
              f"{fr_number(r.n)} messages)")
    predictions = [
        {"text": t, "label": p.label, "confidence": round(p.confidence, 4)}
        for t, p in zip(REFERENCE_TEXTS, classify_texts(REFERENCE_TEXTS, model, tokenizer))
    ]
    for p in predictions:
        print(f"  {p['label']:4s} ({fr_number(p['confidence'], 2)})  {p['text']}")
    extra = {"metrics": metrics, "reference_predictions": predictions}
    if instructor:
        predicted = classify_texts([t for t, _ in instructor], model, tokenizer)
        score = sum(p.label == label for p, (_, label) in zip(predicted, instructor)) / len(instructor)
        extra["instructor_texts"] = {"accuracy": score, "n": len(instructor)}
        print(f"  messages de l'enseignant : {fr_percent(score, 0)} bien classés sur {len(instructor)}")
    figures = {"loss.png": plot_loss(history),
               "accuracy.png": plot_accuracies(history, {k: r.accuracy for k, r in results.items()})}
    save_run(run_dir, model, history, extra={**extra, "total_seconds": round(time.perf_counter() - start, 1)},
             figures=figures)
    print(f"Dossier de l'exécution : {run_dir.resolve()}")
    if args.thresholds_out:
        measured = {"test_acc": results["test"].accuracy, "instructor_texts": extra["instructor_texts"]["accuracy"]}
        entry = thresholds.write(args.thresholds_out, profile.name, measured, run_dir.resolve(), __version__)
        print(f"Seuils de correction du profil {profile.name} (valeur mesurée moins une marge) : "
              + ", ".join(f"{k} {fr_number(v, 2)}" for k, v in entry["thresholds"].items())
              + f" ; écrits dans {Path(args.thresholds_out).resolve()}")


def cmd_info(args) -> None:
    import pandas as pd

    from .params import format_parameter_table, parameter_table

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(format_parameter_table(parameter_table(tuple(args.models))))


def cmd_cache(args) -> None:
    from .french import fr_number
    from .paths import cache_dir, data_dir, hf_hub_dir, tiktoken_dir

    def size(path: Path) -> str:
        if not path.exists():
            return "absent"
        total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return f"{fr_number(total / 1e6, 1)} Mo"

    for name, path in [("racine", cache_dir()), ("données", data_dir()), ("tokenizer", tiktoken_dir()),
                       ("poids GPT-2", hf_hub_dir())]:
        print(f"{name:12s} {path}  ({size(path)})")
    if args.clear:
        shutil.rmtree(cache_dir(), ignore_errors=True)
        print(f"Supprimé : {cache_dir()}")


def cmd_setup_jupyter(args) -> None:
    from .jupyter_setup import INSTRUCTOR_LAB_PLUGINS, configure_student_jupyter

    path = configure_student_jupyter(args.level)
    print(f"JupyterLab pour les étudiants : Validate activé, {len(INSTRUCTOR_LAB_PLUGINS)} panneaux "
          f"enseignant désactivés, configuration nbgrader écrite dans {path}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab_utils", description="TP3 : LoRA sur GPT-2 (spam SMS).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prefetch", help="télécharger données, tokenizer et poids GPT-2 dans le cache")
    p.add_argument("--profile", help="full (défaut), ci ou random-small ; sinon $TP3_PROFILE")
    p.add_argument("--no-weights", action="store_true", help="ne pas télécharger les poids GPT-2")
    p.set_defaults(func=cmd_prefetch)

    p = sub.add_parser("check", help="vérifier données, tokenizer et poids (sans rien télécharger)")
    p.add_argument("--profile", help="full (défaut), ci ou random-small ; sinon $TP3_PROFILE")
    p.add_argument("--quiet", action="store_true", help="ne rien afficher si tout est prêt")
    p.add_argument("--grading", action="store_true", help="pour la correction : ne pas proposer TP3_PROFILE=ci")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("train", help="exécution de référence : LoRA, une époque, évaluation, sauvegarde")
    p.add_argument("--profile", help="full (défaut), ci ou random-small ; sinon $TP3_PROFILE")
    p.add_argument("--run-dir", help="dossier de sortie (défaut : runs/<date>-<profil>)")
    p.add_argument("--epochs", type=int, default=TrainConfig.num_epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--rank", type=int, default=LoRAConfig.rank)
    p.add_argument("--alpha", type=float, default=LoRAConfig.alpha)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--batching", default=TrainConfig.batching, choices=BATCHING_MODES)
    p.add_argument("--precision", default=TrainConfig.precision, choices=["fp32", "bf16"])
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every,
                   help="valider tous les N lots (0 : en fin d'époque)")
    p.add_argument("--instructor-texts", metavar="FICHIER",
                   help="messages de l'enseignant (JSON : liste de [texte, \"spam\"|\"ham\"]) à classer")
    p.add_argument("--thresholds-out", metavar="FICHIER",
                   help="écrire les seuils de correction de ce profil dans FICHIER (JSON, par profil), "
                        "par exemple grading/thresholds.json ; demande --instructor-texts")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="tableau des paramètres (GPT-2 small et medium, sur « meta »)")
    p.add_argument("--models", nargs="+", default=["gpt2-small", "gpt2-medium"])
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("cache", help="où sont les fichiers téléchargés (et --clear pour les supprimer)")
    p.add_argument("--clear", action="store_true")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("setup-jupyter", help="JupyterLab pour les étudiants : Validate oui, panneaux enseignant non")
    p.add_argument("--level", default="sys_prefix", choices=["sys_prefix", "user"])
    p.set_defaults(func=cmd_setup_jupyter)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except LabError as err:
        print(f"Erreur : {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrompu.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
