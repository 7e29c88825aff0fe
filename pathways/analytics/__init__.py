"""Lean flow analytics across pathways: distributions, flow efficiency, Little's law, bottlenecks,
statistical process control (NHS "Making Data Count") and national-standard attainment.

Pure domain: numbers in, judgements out. The database-side aggregation lives in
activities/analytics.py; this package only interprets what it returns.
"""
