"""The error raised for selector text that does not follow the selector grammar.

Input: the offending text, the 0-based index where parsing failed, and a short reason.
Output: a `SelectorError` whose message names the reason and the position and draws a caret under
the offending character, e.g.::

    expected '==' (a single '=' is not an operator) at position 4: app =~ "x"
                                                                       ^

It is both a `tortie.common.errors.UserError` (bad user input; CLI exit code 1) and a `ValueError`
(so code that validates many kinds of values can catch one class).
"""

from __future__ import annotations

from tortie.common.errors import UserError


def _printable(text: str) -> str:
    """`text` with one visible character per input character, so a caret stays aligned."""
    return "".join(" " if ch == "\t" else ("?" if ord(ch) < 32 or ord(ch) == 127 else ch) for ch in text)


class SelectorError(UserError, ValueError):
    """Selector text is not valid. `text` is the whole input, `position` the 0-based failing index."""

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.text = text
        self.position = position
        self.reason = reason
        head = f"{reason} at position {position}: "
        super().__init__(f"{head}{_printable(text)}\n{' ' * (len(head) + position)}^")

    def __reduce__(self) -> tuple[type[SelectorError], tuple[str, int, str]]:
        return (SelectorError, (self.text, self.position, self.reason))
