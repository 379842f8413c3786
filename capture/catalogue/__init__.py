"""The part catalogue outside the store: reading and writing it as CSV.

The catalogue itself (each label's name and attributes, per-shot overrides) lives in
:mod:`capture.store.catalogue`; this package reads a parts list a person keeps in a spreadsheet
(:mod:`capture.catalogue.csv_import`) and writes the catalogue back out the same way.
"""
