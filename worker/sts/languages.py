"""Language pairs, Apertium modes and espeak-ng voices: the one place that maps them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

# (source, target) -> the chain of Apertium modes. Whisper tiny.en only hears English, so English is
# the source; French, Portuguese and Italian go through Spanish.
MT_CHAINS: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "es"): ("eng-spa",),
    ("en", "ca"): ("eng-cat",),
    ("en", "gl"): ("en-gl",),
    ("en", "pt"): ("eng-spa", "es-pt"),
    ("en", "fr"): ("eng-spa", "es-fr"),
    ("en", "it"): ("eng-spa", "spa-ita"),
}
# Debian packages that provide each mode.
MODE_PACKAGES = {"eng-spa": "apertium-eng-spa", "eng-cat": "apertium-eng-cat", "en-gl": "apertium-en-gl",
                 "es-pt": "apertium-es-pt", "es-fr": "apertium-fr-es", "spa-ita": "apertium-spa-ita"}
ESPEAK_VOICE = {"es": "es", "ca": "ca", "gl": "gl", "pt": "pt", "fr": "fr", "it": "it", "en": "en"}


@dataclass(frozen=True)
class VoiceProfile:
    variant: str  # espeak-ng voice variant suffix, "" for the default
    speed_wpm: int


VOICE_PROFILES = {
    "default": VoiceProfile("", 175),
    "female": VoiceProfile("+f3", 175),
    "male": VoiceProfile("+m3", 175),
    "fast": VoiceProfile("", 210),
    "slow": VoiceProfile("", 145),
}


@dataclass(frozen=True)
class ConfigProblem:
    """Why a stream's config is not served: the protocol error code and the reason."""

    code: str  # UNSUPPORTED_LANGUAGE | UNSUPPORTED_VOICE
    message: str


def check_config(source: str, target: str, voice_profile: str,
                 installed: frozenset[str] | None) -> ConfigProblem | None:
    """None when the pair and voice are served, else the problem. ``installed`` None: don't check modes."""
    chain = MT_CHAINS.get((source, target))
    if chain is None:
        pairs = ", ".join(f"{s}-{t}" for s, t in MT_CHAINS)
        return ConfigProblem("UNSUPPORTED_LANGUAGE",
                             f"unsupported language pair {source}-{target} (supported: {pairs})")
    if installed is not None:
        missing = [m for m in chain if m not in installed]
        if missing:
            pkgs = " ".join(MODE_PACKAGES[m] for m in missing)
            return ConfigProblem("UNSUPPORTED_LANGUAGE", f"language pair {source}-{target} needs Apertium modes "
                                 f"{missing}: apt-get install {pkgs}")
    if voice_profile not in VOICE_PROFILES:
        return ConfigProblem("UNSUPPORTED_VOICE",
                             f"unknown voice_profile {voice_profile!r} (known: {', '.join(VOICE_PROFILES)})")
    return None


@lru_cache(maxsize=1)
def installed_modes() -> frozenset[str]:
    if shutil.which("apertium") is None:
        return frozenset()
    out = subprocess.run(["apertium", "-l"], capture_output=True, text=True, timeout=30)
    return frozenset(line.strip() for line in out.stdout.splitlines() if line.strip())
