"""The store: the SQLite journal (store-and-forward buffer) and its retention."""

from edge.store.journal import Journal, row_to_record

__all__ = ["Journal", "row_to_record"]
