"""pytest-cosyvoice: a pytest plugin and regression harness for CosyVoice streaming TTS.

The pytest layer (modules here: `plugin` hooks and fixtures, `settings`, `markers`, `host` (model and
engine), `session` (what the session recorded), `rounds` (RTF rounds), `quality` (the quality gate),
`finish` (the session's end)) drives four rooms without pytest: `judging/` (one test), `recording/`
(the engine's calls), `tracking/` (across sessions: baselines, goldens, drift, A/B, the end's
verdicts) and `report/` (rendering what was decided). Public to users: `engine` (the Engine protocol
and factories), `faults` (forced tokens, injected faults) and `stats`. Layering: tests/test_import_graph.py.
"""
