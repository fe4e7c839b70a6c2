"""Profiles: where the base model's weights come from.

- ``full`` (default): OpenAI's pretrained GPT-2 small from the Hugging Face Hub.
- ``ci``: a randomly initialised GPT-2 of the same design at toy size (2 layers,
  d=64), so the whole lab, notebooks included, runs offline in seconds.
- ``random-small``: GPT-2 small's architecture with random weights, for timing
  and memory checks without the download (speed does not depend on the values).

Choose with ``TP3_PROFILE=ci``. Nothing else differs between profiles: the same
code builds, adapts, trains, evaluates and grades every one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import GPTConfig, gpt_config
from .errors import ConfigError
from .model import GPTModel, build_model

ENV_PROFILE = "TP3_PROFILE"


@dataclass(frozen=True)
class Profile:
    name: str
    model_name: str  # a preset of config.GPT_PRESETS
    pretrained: bool  # True: OpenAI's weights; False: random init with ``base_seed``
    base_seed: int = 1234
    description: str = ""

    @property
    def gpt_config(self) -> GPTConfig:
        return gpt_config(self.model_name)

    @property
    def base_model_id(self) -> str:
        """Names the base weights; stored in adapters to refuse a mismatching base."""
        if self.pretrained:
            from .weights import _checkpoint

            return _checkpoint(self.model_name).model_id
        return f"random:{self.model_name}:seed{self.base_seed}"


PROFILES = {
    "full": Profile("full", "gpt2-small", True, description="GPT-2 small pré-entraîné (OpenAI)"),
    "ci": Profile("ci", "gpt2-tiny", False, description="petit GPT-2 aléatoire (tests, hors ligne)"),
    "random-small": Profile("random-small", "gpt2-small", False,
                            description="GPT-2 small aux poids aléatoires (mesures de vitesse)"),
}


def get_profile(name: str | None = None) -> Profile:
    """Le profil nommé, ou celui que choisit la variable ``TP3_PROFILE`` (par défaut
    ``full`` : GPT-2 small pré-entraîné ; ``ci`` : petit GPT-2 aléatoire, pour essayer)."""
    name = name or os.environ.get(ENV_PROFILE) or "full"
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"{ENV_PROFILE}={name!r} inconnu : choisissez parmi {', '.join(PROFILES)}."
        ) from None


def load_base_model(profile: Profile | str | None = None) -> GPTModel:
    """The profile's base GPT-2 with its language-model head, in eval mode.

    The model remembers its profile (``model.profile``) so that a saved adapter can
    name the base it needs.
    """
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    if profile.pretrained:
        from .weights import load_pretrained_gpt2

        model = load_pretrained_gpt2(profile.model_name)
    else:
        model = build_model(profile.gpt_config, seed=profile.base_seed)
    model.profile = profile.name
    return model.eval()
