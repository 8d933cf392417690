"""Hand-written tokenizer for selector text: a cursor over the input that reads one token at a time.

Input: the selector text. The parser asks for the token it expects next (a label, a string literal,
an operator word, a punctuation mark); each `read_*`/`take_*` call either consumes it and advances
`pos`, or leaves `pos` unchanged and reports absence. `fail` raises `SelectorError` at a position.

Lexical rules (Calico, `libcalico-go/lib/selector/tokenizer`):

* whitespace is spaces and tabs only; anything else outside a string is significant;
* a label is 1..512 characters of `[A-Za-z0-9_./-]`, read greedily;
* a string is `"..."` or `'...'` with no escapes: it ends at the next quote of the same kind;
* operator words (`in`, `contains`, `not in`, `starts with`, `ends with`) tolerate any whitespace
  between their words, including none (`notin`), and must end at a word boundary, i.e. not be
  followed by a label character (`inx` is not `in`).

The tokenizer is pulled by the parser rather than run ahead of it because the grammar is
context-sensitive: `in` is an operator after a label but a label name at the start of an operation.
"""

from __future__ import annotations

from typing import NoReturn

from tortie.selector.errors import SelectorError
from tortie.selector.nodes import LABEL_CHARS, MAX_LABEL_LENGTH

WHITESPACE = " \t"


class Scanner:
    """A cursor over selector text; `pos` is the index of the next unread character."""

    __slots__ = ("end", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.end = len(text)

    def fail(self, reason: str, position: int | None = None) -> NoReturn:
        """Raise `SelectorError` at `position` (default: the cursor)."""
        raise SelectorError(self.text, self.pos if position is None else position, reason)

    def skip_whitespace(self) -> None:
        text, pos, end = self.text, self.pos, self.end
        while pos < end and text[pos] in WHITESPACE:
            pos += 1
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> str:
        """The next character, or "" at the end of the text."""
        return self.text[self.pos] if self.pos < self.end else ""

    def take(self, literal: str) -> bool:
        """Consume `literal` if the text continues with it."""
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def take_word(self, first: str, second: str = "") -> bool:
        """Consume the operator word `first` (or `first` + any whitespace + `second`) at a word boundary."""
        text, end = self.text, self.end
        if not text.startswith(first, self.pos):
            return False
        cursor = self.pos + len(first)
        if second:
            while cursor < end and text[cursor] in WHITESPACE:
                cursor += 1
            if not text.startswith(second, cursor):
                return False
            cursor += len(second)
        if cursor < end and text[cursor] in LABEL_CHARS:
            return False
        self.pos = cursor
        return True

    def read_label(self) -> str | None:
        """Consume and return a label, or return None if no label character is next."""
        text, start, end = self.text, self.pos, self.end
        cursor = start
        while cursor < end and text[cursor] in LABEL_CHARS:
            cursor += 1
        if cursor == start:
            return None
        if cursor - start > MAX_LABEL_LENGTH:
            self.fail(f"label is longer than {MAX_LABEL_LENGTH} characters", start)
        self.pos = cursor
        return text[start:cursor]

    def read_string(self) -> str | None:
        """Consume and return a quoted string's value, or return None if no quote is next."""
        quote = self.peek()
        if quote != '"' and quote != "'":
            return None
        start = self.pos
        close = self.text.find(quote, start + 1)
        if close < 0:
            self.fail(f"unterminated string: no closing {quote}", start)
        self.pos = close + 1
        return self.text[start + 1 : close]
