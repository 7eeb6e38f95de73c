"""The project's benchmark scripts (each runs as `python benchmarks/NAME.py`) and the speaking engine
(`benchmarks.speaking_engine`, imported by `--cosy-engine benchmarks.speaking_engine:build` from the
repository root). A regular package, so that no `benchmarks` elsewhere on the path can shadow it."""
