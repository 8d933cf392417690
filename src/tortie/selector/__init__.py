"""Calico-compatible label selectors: parse text, evaluate label maps, canonical text and ids.

    from tortie.selector import parse
    sel = parse("app == 'web' && !has(quarantine)")
    sel.evaluate({"app": "web"})   # True
    str(sel)                       # '(app == "web" && !has(quarantine))'  (Calico's spelling)

Modules: `lexer` (tokens), `parser` (text -> tree), `nodes` (the tree), `canonical` (tree -> text),
`evaluator` (tree -> closure), `selector` (`Selector`, cached `parse`), and the `label_index`
package (incremental selector x labelled-item matching, in two variants). See docs/design/selector.md.
"""

from __future__ import annotations

from tortie.selector.errors import SelectorError
from tortie.selector.selector import Selector, parse

__all__ = ["Selector", "SelectorError", "parse"]
