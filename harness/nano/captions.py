"""The caption grammar: clean captions with varied phrasings, and the caption kinds of the noise types.

A clean caption names the object (or, 10% of the time, a generic noun with at least one attribute) and mentions
each attribute with its own probability, so captions are informative but partial, as alt-text is.  Sketches
never mention colour (they show none).  All draws come from the generator passed in.
"""

from __future__ import annotations

import numpy as np

from filterbench.harness.nano.scenes import KIND_OBJECT, KIND_OFF
from filterbench.harness.nano.world import (
    BACKGROUND_PHRASES,
    BACKGROUNDS,
    COLOUR_NAMES,
    COUNT_WORDS,
    OBJECTS,
    OFF_CONCEPTS,
    POSITION_PHRASES,
    SIZES,
    TEXTURES,
)

GENERIC_NOUNS = (("object", "objects"), ("thing", "things"), ("shape", "shapes"))
_PREFIX = {0: ("a photo of", "a picture of", "an image of", "close-up of", "photo:"),
           1: ("a cartoon of", "a drawing of", "an illustration of", "clipart of"),
           2: ("a sketch of", "a pencil sketch of", "a line drawing of", "an outline of")}
_SUFFIX = ("", "", "", "", ".", "!", " for sale", " - stock image", " (hd)")
UNDERSPECIFIED = ("a thing", "an object", "something", "a shape", "an item", "a picture", "an image", "a photo",
                  "this one", "some stuff", "look at this", "my stuff")
_BOILERPLATE = ("IMG_{n4}.jpg", "DSC{n5}", "click to enlarge", "view larger image", "untitled", "thumbnail",
                "image not available", "stock photo {n6}", "download now", "photo by admin",
                "no description available", "screenshot_{n4}_{n2}", "{n6}.png", "image {n2} of {n2}")
_OFF_PHRASES = {
    "bar chart": ("a bar chart", "a {c} bar chart", "a bar chart of sales", "bar graph showing results"),
    "pie chart": ("a pie chart", "a pie chart of the budget", "pie chart with segments"),
    "line graph": ("a line graph", "a {c} line graph", "a line chart of prices over time"),
    "barcode": ("a barcode", "a barcode label", "product barcode with numbers"),
    "page of text": ("a page of text", "a scanned document", "a printed page with text"),
    "street map": ("a street map", "a map of the city", "a city map with roads and a river"),
}
# Non-English captions (Spanish, German, French) for the language filter; the oracle records the language.
_FOREIGN = {
    "es": (("pelota", "casa", "árbol", "coche", "estrella", "pez", "taza", "corazón", "flecha", "luna",
            "bandera", "seta", "barco", "anillo", "cruz", "paraguas", "diamante", "campana", "reloj de arena",
            "llave"),
           ("rojo", "naranja", "amarillo", "verde", "azul", "morado", "rosa", "marrón", "negro", "blanco"),
           ("una foto de {n} {c}", "{n} {c} en la imagen", "imagen de una {n} de color {c}", "{n} {c} en venta")),
    "de": (("Ball", "Haus", "Baum", "Auto", "Stern", "Fisch", "Tasse", "Herz", "Pfeil", "Mond", "Fahne", "Pilz",
            "Boot", "Ring", "Kreuz", "Regenschirm", "Diamant", "Glocke", "Sanduhr", "Schlüssel"),
           ("rot", "orange", "gelb", "grün", "blau", "lila", "rosa", "braun", "schwarz", "weiß"),
           ("ein Bild mit {n} in {c}", "{n} in {c} auf dem Foto", "Foto: {n}, Farbe {c}", "schöner {n} in {c}")),
    "fr": (("balle", "maison", "arbre", "voiture", "étoile", "poisson", "tasse", "cœur", "flèche", "lune",
            "drapeau", "champignon", "bateau", "anneau", "croix", "parapluie", "diamant", "cloche", "sablier",
            "clé"),
           ("rouge", "orange", "jaune", "vert", "bleu", "violet", "rose", "marron", "noir", "blanc"),
           ("une photo de {n} {c}", "{n} {c} sur l'image", "image d'un {n} de couleur {c}", "{n} {c} à vendre")),
}
LANGUAGES = tuple(_FOREIGN)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng: np.random.Generator, scene: dict, generic: bool) -> tuple[str, int]:
    """The noun phrase and how many attributes it states."""
    count, style = int(scene["count"]), int(scene["style"])
    nouns = GENERIC_NOUNS[int(rng.integers(len(GENERIC_NOUNS)))] if generic else OBJECTS[int(scene["cls"])]
    words, stated = [], 0
    if count == 1 and rng.random() < 0.25:
        words.append(SIZES[int(scene["size"])])
        stated += 1
    if rng.random() < (0.35 if scene["texture"] else 0.08):
        words.append(TEXTURES[int(scene["texture"])])
        stated += 1
    if style != 2 and rng.random() < (0.5 if not generic else 0.95):
        words.append(COLOUR_NAMES[int(scene["colour"])])
        stated += 1
    words.append(nouns[0] if count == 1 else nouns[1])
    if count > 1:
        lead = COUNT_WORDS[count - 1] if rng.random() < 0.85 else "some"
        stated += lead != "some"
    else:
        lead = _article(words[0]) if rng.random() < 0.9 else "one"
    return f"{lead} {' '.join(words)}", stated


def clean_caption(rng: np.random.Generator, scene: dict) -> str:
    """One caption for an object or off-distribution scene (``scene`` maps field -> scalar)."""
    if int(scene["kind"]) == KIND_OFF:
        phrase = str(rng.choice(_OFF_PHRASES[OFF_CONCEPTS[int(scene["cls"])]]))
        return phrase.format(c=COLOUR_NAMES[int(scene["colour"])])
    generic = rng.random() < 0.1
    phrase, stated = _noun_phrase(rng, scene, generic)
    parts = [phrase]
    position = int(scene["position"])
    if int(scene["count"]) == 1 and rng.random() < (0.6 if position else 0.1):
        parts.append(POSITION_PHRASES[position])
    if int(scene["background"]) < len(BACKGROUNDS) and int(scene["style"]) == 0 and (
            rng.random() < 0.35 or generic and not stated):
        parts.append(BACKGROUND_PHRASES[int(scene["background"])])
    if len(parts) == 3 and rng.random() < 0.5:
        parts[1], parts[2] = parts[2], parts[1]
    style = int(scene["style"])
    prefix_p = 0.45 if style == 0 else 0.85
    text = " ".join(parts)
    if rng.random() < prefix_p:
        text = f"{rng.choice(_PREFIX[style])} {text}"
    return text + str(rng.choice(_SUFFIX))


def clean_captions(rng: np.random.Generator, scenes: dict[str, np.ndarray]) -> list[str]:
    """A clean caption per row of a scene table (kind object or off-distribution)."""
    keys = [k for k in scenes if k != "text"]
    return [clean_caption(rng, {k: scenes[k][i] for k in keys}) for i in range(len(scenes["kind"]))]


def full_caption(scene: dict) -> str:
    """The fully specified caption of an object scene (retrieval sets and the HQ set state everything)."""
    count, style = int(scene["count"]), int(scene["style"])
    words = [SIZES[int(scene["size"])]] if count == 1 else []
    words.append(TEXTURES[int(scene["texture"])])
    if style != 2:
        words.append(COLOUR_NAMES[int(scene["colour"])])
    noun = OBJECTS[int(scene["cls"])][0 if count == 1 else 1]
    lead = _article(words[0] if words else noun) if count == 1 else COUNT_WORDS[count - 1]
    text = f"{lead} {' '.join(words + [noun])}"
    if count == 1:
        text += " " + POSITION_PHRASES[int(scene["position"])]
    if style == 0 and int(scene["background"]) < len(BACKGROUNDS):
        text += " " + BACKGROUND_PHRASES[int(scene["background"])]
    return text if style == 0 else f"{_PREFIX[style][0]} {text}"


def parrot(rng: np.random.Generator, texts) -> list[str]:
    """Captions that transcribe a sign's words (``"red ball"``, ``"a red ball"``, ``"red ball for sale"``)."""
    out = []
    for text in texts:
        draw = rng.random()
        if draw < 0.4:
            out.append(str(text))
        elif draw < 0.8:
            out.append(f"{_article(str(text))} {text}")
        else:
            out.append(f"{text}{rng.choice(_SUFFIX)}")
    return out


def underspecified(rng: np.random.Generator, n: int) -> list[str]:
    return [str(rng.choice(UNDERSPECIFIED)) + str(rng.choice(("", ".", "!"))) for _ in range(n)]


def boilerplate(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        pattern = str(rng.choice(_BOILERPLATE))
        out.append(pattern.format(n2=int(rng.integers(1, 99)), n4=f"{int(rng.integers(0, 10_000)):04d}",
                                  n5=f"{int(rng.integers(0, 100_000)):05d}", n6=int(rng.integers(100_000, 999_999))))
    return out


def foreign(rng: np.random.Generator, scenes: dict[str, np.ndarray]) -> tuple[list[str], list[str]]:
    """(captions, language codes) in Spanish, German or French for object scenes."""
    captions, langs = [], []
    for cls, colour in zip(scenes["cls"], scenes["colour"]):
        lang = LANGUAGES[int(rng.integers(len(LANGUAGES)))]
        nouns, colours, templates = _FOREIGN[lang]
        captions.append(str(rng.choice(templates)).format(n=nouns[int(cls)], c=colours[int(colour)]))
        langs.append(lang)
    return captions, langs


def text_label(scenes: dict[str, np.ndarray], with_colour: bool) -> np.ndarray:
    """Words to draw into object images: the class name, optionally preceded by the colour."""
    out = np.full(len(scenes["cls"]), "", dtype=object)
    for i, (kind, cls, colour) in enumerate(zip(scenes["kind"], scenes["cls"], scenes["colour"])):
        if kind == KIND_OBJECT:
            name = OBJECTS[int(cls)][0]
            out[i] = f"{COLOUR_NAMES[int(colour)]} {name}" if with_colour else name
    return out


def named_class(texts: list[str]) -> np.ndarray:
    """The object class a caption names (first singular or plural noun), -1 when it names none."""
    lookup = {word: cls for cls, forms in enumerate(OBJECTS) for word in forms}
    out = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        for word in text.replace(".", " ").replace("!", " ").replace(",", " ").split():
            if word in lookup:
                out[i] = lookup[word]
                break
    return out
