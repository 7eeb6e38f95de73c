"""Judging one test: marker specs, the checks, playback, the verdict, JUnit properties. No pytest import."""
