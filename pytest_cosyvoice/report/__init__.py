"""Rendering what tracking.verdicts decided: the report's data model, plots, the HTML page and the files
written (`findings`), the terminal summary (`terminal`) and the Markdown summary. Decides nothing,
saves no baseline. No pytest import."""
