"""WordNet 3.0 lookups for DataComp's text-based filter, read straight from WordNet's database files.

DataComp's text-based baseline keeps a caption when, for some whitespace token ``w``, the offset of
``nltk.corpus.wordnet.synsets(w)[0]`` is an ImageNet-21k synset id.  This module answers the same question
without nltk or a download, following the lookup of nltk 3.8.1 (the version DataComp pins):

1. lower-case the token;
2. for each part of speech in the order noun, verb, adjective, adverb, find its base forms with *morphy*:
   a token listed in the POS's exception file maps to itself plus its listed bases; otherwise the token itself
   plus the detachment rules applied once, and if none of these is a WordNet lemma of that POS, the rules are
   applied again and again to the new forms until one is (later nltk releases dropped this repetition, so
   e.g. ``dogss`` finds ``dog`` here and in DataComp, and nothing in nltk >= 3.9);
3. the first synset is the first offset the index file lists for the first base form of the first POS that
   has one (index files list senses by frequency).

Only the numeric offset is compared, so a verb synset whose offset equals a noun id matches, as in DataComp.
Data: any folder with ``index.{noun,verb,adj,adv}`` and ``{noun,verb,adj,adv}.exc`` of WordNet 3.0 (the
version of the ImageNet ids): ``$FILTERBENCH_WORDNET_DIR``, else Debian's ``wordnet-base`` package
(``/usr/share/wordnet``), else ``~/nltk_data/corpora/wordnet`` (an unzipped nltk download).
"""

from __future__ import annotations

import os
from pathlib import Path

from filterbench.harness.errors import FilterbenchError

POS_ORDER = ("n", "v", "a", "r")
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
#: detachment rules of WordNet's morphy, per part of speech, in nltk's order (the order decides ties)
RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
          ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
DEFAULT_DIRS = ("/usr/share/wordnet", "~/nltk_data/corpora/wordnet")


class WordNetError(FilterbenchError):
    """WordNet's database files are missing or are not WordNet 3.0."""


def find_wordnet_dir() -> Path:
    """The first folder holding WordNet 3.0's index files (see the module docstring for the search order)."""
    candidates = [os.environ["FILTERBENCH_WORDNET_DIR"]] if os.environ.get("FILTERBENCH_WORDNET_DIR") else []
    for candidate in [*candidates, *DEFAULT_DIRS]:
        path = Path(candidate).expanduser()
        if (path / "index.noun").is_file():
            return path
    raise WordNetError("WordNet 3.0 database files not found: install Debian's wordnet-base package "
                       "(apt-get install wordnet-base) or set FILTERBENCH_WORDNET_DIR to a folder holding "
                       "index.noun, index.verb, index.adj, index.adv and the .exc files")


class WordNet:
    """First-synset lookups over WordNet's index and exception files (loaded once, ~0.5 s)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else find_wordnet_dir()
        self.first: dict[str, dict[str, int]] = {pos: self._read_index(pos) for pos in POS_ORDER}
        self.exceptions = {pos: self._read_exceptions(pos) for pos in POS_ORDER}
        self._cache: dict[str, int | None] = {}

    def _read_index(self, pos: str) -> dict[str, int]:
        path = self.root / f"index.{_FILES[pos]}"
        if not path.is_file():
            raise WordNetError(f"{path}: missing WordNet index file")
        first: dict[str, int] = {}
        with open(path, encoding="utf-8") as handle:
            header = ""
            for line in handle:
                if line.startswith(" "):  # the licence header
                    header += line
                    continue
                fields = line.split()
                count = int(fields[2])  # synset_cnt; the offsets are the last synset_cnt fields
                first[fields[0]] = int(fields[-count])
        if "WordNet 3.0" not in header:
            raise WordNetError(f"{path}: not WordNet 3.0 (ImageNet synset ids are WordNet 3.0 offsets)")
        return first

    def _read_exceptions(self, pos: str) -> dict[str, list[str]]:
        path = self.root / f"{_FILES[pos]}.exc"
        table: dict[str, list[str]] = {}
        if path.is_file():
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    fields = line.split()
                    if fields:
                        table[fields[0]] = fields[1:]
        return table

    def base_forms(self, form: str, pos: str) -> list[str]:
        """WordNet lemmas of ``pos`` that ``form`` (already lower-cased) may be an inflection of, in order."""
        lemmas = self.first[pos]

        def known(forms: list[str]) -> list[str]:
            return list(dict.fromkeys(f for f in forms if f in lemmas))

        if form in self.exceptions[pos]:
            return known([form, *self.exceptions[pos][form]])
        forms = _detach([form], RULES[pos])
        found = known([form, *forms])
        while not found and forms:
            forms = _detach(forms, RULES[pos])
            found = known(forms)
        return found

    def first_synset_offset(self, word: str) -> int | None:
        """Offset of ``synsets(word)[0]`` as nltk 3.8.1 orders them, or None when WordNet has no synset."""
        if word in self._cache:
            return self._cache[word]
        form, offset = word.lower(), None
        for pos in POS_ORDER:
            bases = self.base_forms(form, pos)
            if bases:
                offset = self.first[pos][bases[0]]
                break
        self._cache[word] = offset
        return offset


def _detach(forms: list[str], rules: tuple[tuple[str, str], ...]) -> list[str]:
    """Every rule applied to every form, in order, duplicates dropped (keeping the first occurrence).

    Dropping duplicates keeps both the order of first occurrences and the set of forms, so the result of the
    lookup is unchanged while the repeated rule application cannot grow exponentially on odd tokens.
    """
    out = [f[: len(f) - len(old)] + new for f in forms for old, new in rules if f.endswith(old)]
    return list(dict.fromkeys(out))


_SHARED: dict[str, WordNet] = {}


def shared_wordnet() -> WordNet:
    """One WordNet per process (workers forked after the first load share it)."""
    key = str(find_wordnet_dir())
    if key not in _SHARED:
        _SHARED[key] = WordNet(key)
    return _SHARED[key]
