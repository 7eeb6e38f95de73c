"""A base engine for the A/B tests (`--cosy-base-engine ab_base:build`): the Runtime itself, with every
call it gets written down (kind, text, the test's own keyword arguments, the seed the pair passed), so
the outer test can see that the base ran what the head ran. It names `seed=` as the Runtime does, so
a pair passes its seed per request."""
CALLS = []
HARNESS = {"observer", "stall_timeout_s"}   # what cosy_tts adds to a call on its own


class Recorded:
    def __init__(self, runtime):
        self.runtime, self.sample_rate, self.version = runtime, runtime.sample_rate, runtime.version

    def _note(self, kind, text, kwargs, seed):
        CALLS.append({"kind": kind, "text": text, "seed": seed,
                      "kwargs": {k: v for k, v in kwargs.items() if k not in HARNESS}})

    def stream(self, text, *, observer=None, stall_timeout_s=None, seed=None, **kwargs):
        self._note("stream", text, kwargs, seed)
        return self.runtime.stream(text, observer=observer, stall_timeout_s=stall_timeout_s, seed=seed, **kwargs)

    def synthesize(self, text, *, observer=None, stall_timeout_s=None, seed=None, **kwargs):
        self._note("synthesize", text, kwargs, seed)
        return self.runtime.synthesize(text, observer=observer, stall_timeout_s=stall_timeout_s, seed=seed,
                                       **kwargs)


def build(runtime):
    return Recorded(runtime)
