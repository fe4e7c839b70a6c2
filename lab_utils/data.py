"""The UCI SMS Spam Collection: download, exact parse, deduplication, balance, split.

Labels are integers: 0 = ham, 1 = spam (``LABELS[i]`` gives the name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import DataConfig
from .download import RemoteFile, fetch, verify
from .errors import DataError
from .paths import ENV_DATA_DIR, data_dir

LABELS = ("ham", "spam")
SPLIT_NAMES = {"train": "entraînement", "val": "validation", "test": "test"}  # as students read them

SMS_SPAM = RemoteFile(
    url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    filename="SMSSpamCollection",
    member="SMSSpamCollection",
    sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    size=477_907,
    env_var=ENV_DATA_DIR,
)


def sms_spam_path(download: bool = True, **fetch_kwargs) -> Path:
    """Path of the verified ``SMSSpamCollection`` file, downloaded on first use.

    A corrupt copy in the lab's own cache is moved aside and downloaded again; one in
    a folder named by ``$TP3_DATA_DIR`` belongs to the user and is only reported.
    """
    folder = data_dir()
    path = folder / SMS_SPAM.filename
    if not download:
        if not path.exists():
            raise DataError(f"{path} est introuvable (téléchargement désactivé).")
        verify(path, SMS_SPAM)
        return path
    fetch_kwargs.setdefault("replace_corrupt", not os.environ.get(ENV_DATA_DIR, "").strip())
    return fetch(SMS_SPAM, folder, **fetch_kwargs)


def read_sms_spam(path: str | Path | None = None) -> pd.DataFrame:
    """Parse the file into a DataFrame with columns ``text`` (str) and ``label`` (0/1).

    One message per line, ``label<TAB>text``, no quoting: a message may start with
    a quote character, which a CSV reader would take as the start of a quoted field.
    """
    path = Path(path) if path is not None else sms_spam_path()
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} n'est pas un texte UTF-8 ({err}).") from err
    texts, labels = [], []
    for lineno, line in enumerate(content.split("\n"), start=1):
        if not line:
            continue
        name, tab, text = line.partition("\t")
        if not tab or name not in LABELS:
            raise DataError(
                f"{path}, ligne {lineno} : attendu « ham<TAB>texte » ou « spam<TAB>texte », "
                f"obtenu {line[:60]!r}."
            )
        texts.append(text.removesuffix("\r"))
        labels.append(LABELS.index(name))
    return pd.DataFrame({"text": texts, "label": labels})


@dataclass(frozen=True)
class Splits:
    """Train, validation and test DataFrames (columns ``text``, ``label``)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def items(self):
        return (("train", self.train), ("val", self.val), ("test", self.test))


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the first copy of each message (the file holds 403 exact duplicates)."""
    return df.drop_duplicates(subset="text", keep="first").reset_index(drop=True)


def balance(df: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    """Undersample ham to the number of spam messages."""
    spam = df[df.label == 1]
    ham = df[df.label == 0].sample(n=len(spam), random_state=seed)
    return pd.concat([ham, spam]).reset_index(drop=True)


def split(df: pd.DataFrame, fractions=(0.7, 0.1, 0.2), seed: int = 42) -> Splits:
    """Shuffle with ``seed`` and cut into train/val/test by ``fractions`` (test gets the rest)."""
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    train_end = int(len(df) * fractions[0])
    val_end = train_end + int(len(df) * fractions[1])
    return Splits(
        train=df.iloc[:train_end].reset_index(drop=True),
        val=df.iloc[train_end:val_end].reset_index(drop=True),
        test=df.iloc[val_end:].reset_index(drop=True),
    )


def load_splits(cfg: DataConfig | None = None, path: str | Path | None = None) -> Splits:
    """Les données du TP : lecture du corpus, dédoublonnage (sauf
    ``DataConfig(deduplicate=False)``), équilibrage (autant de ham que de spam),
    découpage 70/10/20 % avec la graine 42. Renvoie les jeux ``.train``, ``.val``,
    ``.test`` (tableaux pandas : colonnes ``text`` et ``label``, 0 = ham, 1 = spam)."""
    cfg = cfg or DataConfig()
    df = read_sms_spam(path)
    if cfg.deduplicate:
        df = deduplicate(df)
    if cfg.balance:
        df = balance(df, cfg.seed)
    return split(df, cfg.split, cfg.seed)


STYLE_CUES = {  # regular expressions of typical cues of the corpus' spam
    "numéro (5 chiffres ou plus)": r"\d{5,}",
    "montant (£, $, €)": r"[£$€]",
    "« txt », « text », « reply »": r"(?i)\b(?:txt|text|reply)\b",
    "« free », « win », « prize », « claim »…": r"(?i)\b(?:free|win|won|winner|prize|claim|cash|urgent)\b",
    "mot en MAJUSCULES (3 lettres ou plus)": r"\b[A-Z]{3,}\b",
    "lien (www, http)": r"(?i)www\.|https?:",
}


def style_features(df: pd.DataFrame) -> pd.DataFrame:
    """Part des ham et des spams (en %) qui présentent chaque indice de style
    (numéros, montants, « txt »…), et leur longueur moyenne en caractères."""
    rows = {}
    for name, pattern in STYLE_CUES.items():
        has = df["text"].str.contains(pattern, regex=True)
        rows[name] = [100 * has[df.label == k].mean() for k in (0, 1)]
    table = pd.DataFrame(rows, index=["ham (%)", "spam (%)"]).T.round(1)
    lengths = df["text"].str.len().groupby(df["label"]).mean().round(1)
    table.loc["longueur moyenne (caractères)"] = [lengths.get(0), lengths.get(1)]
    return table


def preview_messages(df: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Les ``n`` premiers messages d'un jeu, avec leur classe en clair (« ham » ou « spam »)."""
    head = df.head(n)
    return pd.DataFrame({"message": head["text"], "classe": [LABELS[k] for k in head["label"]]})
