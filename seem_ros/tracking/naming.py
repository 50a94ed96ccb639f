"""How a phrase names a tracked object: shared by the tracker (which object "stop tracking X"
removes, which text objects are the same) and the prompt layer above it."""
import re

_ARTICLE = re.compile(r"^(the|a|an)\s+", re.IGNORECASE)


def same_object(label: str, phrase: str) -> bool:
    """Whether `phrase` (from "stop tracking X") names the object labelled `label`: equal but for
    case, surrounding spaces and a leading article."""
    def bare(text: str) -> str:
        return _ARTICLE.sub("", text.strip().lower())
    return bare(label) == bare(phrase)
