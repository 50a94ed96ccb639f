"""Spoken/typed commands -> actions on the set of segmented objects.

    "segment the red cup"            -> add "the red cup"
    "track the person and the dog"   -> add "the person", "the dog"
    "the red cup"                    -> add "the red cup" (a bare phrase is a segment request)
    "stop tracking the cup"          -> remove objects labelled like "the cup"
    "clear" / "stop" / "reset"       -> remove everything
Keywords are matched in any case; phrases keep the user's casing (they become labels).

How a phrase is read (read_phrase):
    "the cups", "all people", "every dog", "person"  -> a category: every instance of it is tracked,
        each with its own id (a plural, a phrase after all/every/each, or a single bare noun)
    "the red cup", "a person on the left"            -> one object: the best match (text grounding)
"""
import re
from dataclasses import dataclass, field
from typing import List, Optional

MAX_TEXT_LENGTH = 300  # characters, for texts and labels; CLIP sees at most 75 tokens anyway

_CLEAR = re.compile(r"^(clear|reset|stop|stop tracking|stop everything|forget everything|clear all)[.!]*$",
                    re.IGNORECASE)
_REMOVE = re.compile(r"^(stop tracking|stop segmenting|forget|untrack|remove|drop)\s+(?P<what>.+)$", re.IGNORECASE)
_ADD = re.compile(r"^(please\s+)?(segment|track|find|follow|show( me)?|highlight|look at|detect)\s+(?P<what>.+)$",
                  re.IGNORECASE)
_SPLIT = re.compile(r"\s*(?:,|;|\band\b|&)\s*", re.IGNORECASE)


class CommandError(ValueError):
    pass


@dataclass
class TextCommand:
    action: str  # "add", "remove" or "clear"
    phrases: List[str] = field(default_factory=list)


def _phrases(what: str) -> List[str]:
    phrases = [p.strip(" .!?") for p in _SPLIT.split(what)]
    return [p for p in phrases if p]


def parse_command(text: str) -> TextCommand:
    if not isinstance(text, str):
        raise CommandError("command is not text")
    cleaned = " ".join(text.split()).strip()
    if not cleaned:
        raise CommandError("empty command")
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise CommandError(f"command is {len(cleaned)} characters long (at most {MAX_TEXT_LENGTH})")
    if _CLEAR.match(cleaned):
        return TextCommand("clear")
    match = _REMOVE.match(cleaned)
    if match:
        return TextCommand("remove", _phrases(match.group("what")))
    match = _ADD.match(cleaned)
    phrases = _phrases(match.group("what") if match else cleaned)
    if not phrases:
        raise CommandError(f"nothing to segment in {cleaned!r}")
    return TextCommand("add", phrases)


_QUANTIFIED = re.compile(r"^(all|every|each|all of the|all the)\s+(?P<noun>.+)$", re.IGNORECASE)
_ARTICLE = re.compile(r"^(the|a|an)\s+", re.IGNORECASE)
_IRREGULAR_PLURALS = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
                      "geese": "goose", "feet": "foot", "teeth": "tooth", "sheep": "sheep", "fish": "fish"}


@dataclass
class PhraseReading:
    category: bool  # every instance (True) or the single best match (False)
    noun: str  # what is looked for: the singular noun of a category, else the phrase itself


def _singular(word: str) -> Optional[str]:
    """The singular of a plural English noun, None when the word does not look plural."""
    lower = word.lower()
    if lower in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[lower]
    if len(lower) > 3 and lower.endswith("ies"):
        return word[:-3] + "y"
    if len(lower) > 3 and lower.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(lower) > 2 and lower.endswith("s") and not lower.endswith(("ss", "us", "is")):
        return word[:-1]
    return None


def read_phrase(phrase: str) -> PhraseReading:
    """Whether a phrase names a category (track every instance) or one object (see the module doc)."""
    phrase = " ".join(phrase.split())
    quantified = _QUANTIFIED.match(phrase)
    words = _ARTICLE.sub("", quantified.group("noun") if quantified else phrase).split()
    if not words:
        return PhraseReading(False, phrase)
    if len(words) == 1:  # "cups", "the cups", "person": a category; "the cup" is one object
        singular = _singular(words[0])
        if singular is not None or quantified or not _ARTICLE.match(phrase):
            return PhraseReading(True, singular or words[0])
        return PhraseReading(False, phrase)
    singular = _singular(words[-1])
    if quantified or (singular is not None and len(words) == 2):
        # "all red cups", "the red cups": the category with its adjective ("red cup")
        return PhraseReading(True, " ".join(words[:-1] + [singular or words[-1]]))
    return PhraseReading(False, phrase)
