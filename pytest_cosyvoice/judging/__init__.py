"""Judging one test: marker specs, the stream checks, playback, the verdict, measurements, JUnit
properties, and the quality gate's judging (sound, intelligibility and speaker-similarity metrics,
the call outputs against their goldens). No pytest import."""
