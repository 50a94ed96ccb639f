"""Spoken/typed commands -> actions on the set of segmented objects.

    "segment the red cup"            -> add "the red cup"
    "track the person and the dog"   -> add "the person", "the dog"
    "the red cup"                    -> add "the red cup" (a bare phrase is a segment request)
    "stop tracking the cup"          -> remove objects labelled like "the cup"
    "clear" / "stop" / "reset"       -> remove everything
Keywords are matched in any case; phrases keep the user's casing (they become labels).
"""
import re
from dataclasses import dataclass, field
from typing import List

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


def same_object(label: str, phrase: str) -> bool:
    """Whether `phrase` (from "stop tracking X") names the object labelled `label`."""
    strip = lambda s: re.sub(r"^(the|a|an)\s+", "", s.strip().lower())  # noqa: E731
    return strip(label) == strip(phrase)
