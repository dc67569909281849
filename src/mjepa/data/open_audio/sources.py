"""What each Debian package holds and how its files are labelled.

A source names one package, the licence its audio is under (checked against the package's copyright file when it is
fetched) and a function that walks the unpacked tree and returns its clips, each with its labels and the fields a
split can be made on (the speaker or voice pack, the language). Nothing here downloads or decodes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    path: Path
    labels: tuple[str, ...]
    fields: tuple[tuple[str, str], ...] = ()  # e.g. (("voice", "Pirate"), ("phrase", "fire"))

    def value(self, name: str) -> str | None:
        return dict(self.fields).get(name)


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    licence: str  # the licence of the audio files, as the package's copyright file names it
    description: str
    find_clips: Callable[[Path], list[Clip]] = field(repr=False)
    # For a package whose copyright file is not machine-readable (no ``License:`` fields): words of its licence
    # grant that the file must contain (whitespace-insensitive), checked instead.
    licence_grant: str | None = None


# -- hedgewars: voice lines of 15 voice packs ---------------------------------------------------------------------
HEDGEWARS_VOICES = Path("usr/share/games/hedgewars/Data/Sounds/voices")


def phrase_of(stem: str) -> str:
    """The phrase a voice line says: its file name without the take number (``Firepunch3`` -> ``firepunch``)."""
    return re.sub(r"\d+$", "", stem).lower()


def hedgewars_clips(root: Path) -> list[Clip]:
    clips = []
    for path in sorted((root / HEDGEWARS_VOICES).glob("*/*.ogg")):
        voice, phrase = path.parent.name, phrase_of(path.stem)
        clips.append(Clip(path, (phrase,), (("voice", voice), ("phrase", phrase))))
    return clips


# -- KDE's ktuberling (spoken words) and klettres (spoken letters and syllables) ----------------------------------
def sound_table(path: Path) -> list[tuple[str, str]]:
    """``(name, file)`` of every ``<sound name=... file=...>`` element of a KDE sound-theme XML file."""
    try:
        tree = ElementTree.parse(path)
    except ElementTree.ParseError as err:
        raise ValueError(f"{path}: not a readable sound table ({err})") from None
    return [(e.get("name"), e.get("file")) for e in tree.iter("sound") if e.get("name") and e.get("file")]


KTUBERLING_SOUNDS = Path("usr/share/ktuberling/sounds")


def ktuberling_clips(root: Path) -> list[Clip]:
    """One clip per (language, word) of each language's ``.soundtheme`` (files it does not name are left out). A
    language's script variants (``sr``, ``sr@latin``, ...) share one ``language`` (they share recordings), and keep
    their own name as ``variant``."""
    clips = []
    folder = root / KTUBERLING_SOUNDS
    for theme in sorted(folder.glob("*.soundtheme")):
        variant = theme.stem
        language = variant.split("@")[0]
        for word, file in sound_table(theme):
            path = folder / file
            if path.is_file():
                clips.append(Clip(path, (word,), (("language", language), ("variant", variant), ("word", word))))
    return clips


KLETTRES_SOUNDS = Path("usr/share/klettres")


def klettres_clips(root: Path) -> list[Clip]:
    """Letters (``alpha/``) and syllables (``syllab/``) of each language's ``sounds.xml``."""
    clips = []
    folder = root / KLETTRES_SOUNDS
    for table in sorted(folder.glob("*/sounds.xml")):
        language = table.parent.name
        for name, file in sound_table(table):
            path = folder / file
            if path.is_file():
                kind = "letter" if "/alpha/" in file else "syllable"
                clips.append(Clip(path, (name,), (("language", language), ("kind", kind), ("text", name))))
    return clips


# -- MegaGlest's sound effects and unit voices, by faction --------------------------------------------------------
MEGAGLEST_TECH = Path("usr/share/games/megaglest/techs/megapack")
# The events most of its clips belong to: a unit's attack, death and hit sounds and its voiced replies when selected
# or given an order ("ack"); the file name's last word says which (``swordman_attack7`` -> attack).
MEGAGLEST_EVENTS = ("attack", "ack", "select", "die", "hit")


def megaglest_clips(root: Path) -> list[Clip]:
    clips = []
    tech = root / MEGAGLEST_TECH
    for path in sorted([*tech.rglob("*.wav"), *tech.rglob("*.ogg")]):
        parts = path.relative_to(tech).parts
        faction = parts[1] if parts[0] == "factions" else "common"
        event = phrase_of(path.stem).rsplit("_", 1)[-1]
        fields = [("faction", faction), ("sound", phrase_of(path.stem))]
        labels: tuple[str, ...] = ()
        if event in MEGAGLEST_EVENTS:
            fields.append(("event", event))
            labels = (event,)
        clips.append(Clip(path, labels, tuple(fields)))
    return clips


# -- Asterisk's telephone prompts, incl. spoken digits ------------------------------------------------------------
ASTERISK_SOUNDS = Path("usr/share/asterisk/sounds")
ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
# The copyright file's licence per language archive: the Italian and Russian prompts are CC-BY, the others CC-BY-SA.
ASTERISK_LICENCES = {
    "en": "CC-BY-SA-3.0",
    "es": "CC-BY-SA-3.0",
    "fr": "CC-BY-SA-3.0",
    "it": "CC-BY-3.0",
    "ru": "CC-BY-3.0",
}
ASTERISK_CODECS = {"wav": "wav", "gsm": "gsm"}  # package suffix -> file extension


def asterisk_clips(language: str, extension: str) -> Callable[[Path], list[Clip]]:
    def find(root: Path) -> list[Clip]:
        clips = []
        for path in sorted((root / ASTERISK_SOUNDS).glob(f"*/**/*.{extension}")):
            relative = path.relative_to(root / ASTERISK_SOUNDS)
            prompt = str(Path(*relative.parts[1:]).with_suffix(""))  # below the voice folder: "digits/7"
            fields = [("language", language), ("voice", relative.parts[0]), ("prompt", prompt)]
            labels: tuple[str, ...] = ()
            if relative.parent.name == "digits" and re.fullmatch(r"[0-9]", path.stem):
                fields.append(("digit", path.stem))
                labels = (path.stem,)
            clips.append(Clip(path, labels, tuple(fields)))
        return clips

    return find


def asterisk_source(language: str, codec: str = "wav") -> Source:
    if language not in ASTERISK_LICENCES:
        raise ValueError(f"asterisk language {language!r} is not one of {', '.join(ASTERISK_LANGUAGES)}")
    if codec not in ASTERISK_CODECS:
        raise ValueError(f"asterisk codec {codec!r} is not one of {', '.join(ASTERISK_CODECS)}")
    return Source(
        f"asterisk-{language}",
        f"asterisk-core-sounds-{language}-{codec}",
        ASTERISK_LICENCES[language],
        f"Asterisk telephone prompts ({language}, 8 kHz), incl. the spoken digits 0-9",
        asterisk_clips(language, ASTERISK_CODECS[codec]),
    )


# -- Fish Fillets NG: the dialogue of its levels, Czech and Dutch recordings ------------------------------------------
FILLETS_SOUNDS = Path("usr/share/games/fillets-ng/sound")
GPL_2_GRANT = (
    "under the terms of the GNU General Public License as published by the Free Software Foundation; version 2"
)


def fillets_clips(language: str) -> Callable[[Path], list[Clip]]:
    """Every dialogue line of one language (``sound/LEVEL/LANG/*.ogg``); the file name's first word names the
    level's script, the second its speaker (``vit-m-hlava``: the big fish, ``m``)."""

    def find(root: Path) -> list[Clip]:
        clips = []
        for path in sorted((root / FILLETS_SOUNDS).glob(f"*/{language}/*.ogg")):
            parts = path.stem.split("-")
            speaker = parts[1] if len(parts) > 2 else "?"
            fields = (("language", language), ("level", path.parent.parent.name), ("speaker", speaker))
            clips.append(Clip(path, (), fields))
        return clips

    return find


FROZEN_BUBBLE_SOUNDS = Path("usr/share/games/frozen-bubble/snd")


def frozen_bubble_clips(root: Path) -> list[Clip]:
    return [Clip(path, (), (("sound", path.stem),)) for path in sorted((root / FROZEN_BUBBLE_SOUNDS).glob("*.ogg"))]


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "hedgewars-voices",
            "hedgewars-data",
            "GFDL-1.3",
            "Hedgewars voice lines: about 60 phrases spoken by 15 voice packs",
            hedgewars_clips,
        ),
        Source(
            "ktuberling-words",
            "ktuberling-data",
            "GPL-2+",
            "KTuberling spoken words: about 72 words in 26 languages",
            ktuberling_clips,
        ),
        Source(
            "klettres-letters",
            "klettres-data",
            "GPL-2+",
            "KLettres spoken letters and syllables in 20 languages",
            klettres_clips,
        ),
        Source(
            "megaglest-sounds",
            "megaglest-data",
            "CC-BY-SA-3.0",
            "MegaGlest sound effects and unit voices of 7 factions: attacks, deaths, hits, replies",
            megaglest_clips,
        ),
        *(asterisk_source(language) for language in ASTERISK_LANGUAGES),
        *(
            Source(
                f"fillets-{language}",
                f"fillets-ng-data-{language}",
                "GPL-2",
                f"Fish Fillets NG dialogue lines, {name} recordings (pretraining only: no task uses them)",
                fillets_clips(language),
                licence_grant=GPL_2_GRANT,
            )
            for language, name in (("cs", "Czech"), ("nl", "Dutch"))
        ),
        Source(
            "frozen-bubble-sounds",
            "frozen-bubble-data",
            "GPL-2",
            "Frozen Bubble's sound effects (pretraining only)",
            frozen_bubble_clips,
        ),
    )
}
DEFAULT_SOURCES = tuple(SOURCES)


def resolve_sources(names: list[str], codec: str = "wav") -> list[Source]:
    """The sources called ``names`` (Asterisk's in ``codec``: ``gsm`` packages are a tenth of the size)."""
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown open-audio source {unknown[0]!r}; expected some of {', '.join(SOURCES)}")
    return [asterisk_source(n.split("-", 1)[1], codec) if n.startswith("asterisk-") else SOURCES[n] for n in names]
