"""The session report: its data model, plots, the HTML page and the files written. No pytest import."""
