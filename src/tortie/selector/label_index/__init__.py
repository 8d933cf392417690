"""Label indexes: incremental "which selectors match which labelled items" (selectors x items).

    from tortie.selector.label_index import AnchoredLabelIndex
    index = AnchoredLabelIndex(on_match_started, on_match_stopped)
    index.update_selector("pol-1", parse("role == 'db'"))
    index.update_labels("ep-1", {"role": "db"}, parent_ids=["profile-a"])   # -> on_match_started

Modules: `api` (the contract every variant keeps: callbacks, label inheritance, `effective_labels`),
`base` (`IndexBase`: items, parents, the relation and its callbacks, shared by the variants),
`keyed` (`LabelIndex`: narrows by the label keys a selector mentions), `anchored`
(`AnchoredLabelIndex`: narrows by one label value a selector pins; what the policy calcs use). The
linear-scan oracle the property tests compare every variant with is
`tortie.testing.naive_label_index.NaiveLabelIndex`. See docs/design/selector.md.
"""

from __future__ import annotations

from tortie.selector.label_index.anchored import AnchoredLabelIndex
from tortie.selector.label_index.api import MatchCallback, SelectorLabelIndex, effective_labels, ignore_match
from tortie.selector.label_index.keyed import LabelIndex

__all__ = [
    "AnchoredLabelIndex",
    "LabelIndex",
    "MatchCallback",
    "SelectorLabelIndex",
    "effective_labels",
    "ignore_match",
]
