"""Speaks one text with libespeak-ng and writes the audio to stdout; run by `speaking_engine` in a
fresh process per request.

Why a process per request: libespeak-ng keeps synthesis state in C globals that neither
`espeak_Terminate` + `espeak_Initialize` nor its seeds (`espeak_ng_SetRandSeed`, libc `srand`) reset
(measured with the bundled 1.52: the same text spoken twice in one process differs from the 60th ms on,
by up to 250 samples in length), while a fresh process speaks a text identically every time. A process
also keeps the library's globals out of the caller's, and gives a stall timeout something to kill.

    python espeak_worker.py LIBRARY DATA_DIR VOICE WORDS_PER_MINUTE   < text (UTF-8)

stdout: the sample rate (int32, little-endian), then the samples (int16, little-endian, mono).
Exit code 2 and one line on stderr when the library refuses something. Standard library only: the
worker starts in about 50 ms.
"""
from __future__ import annotations

import ctypes
import struct
import sys

# speak_lib.h of espeak-ng: the few constants and calls used here.
AUDIO_OUTPUT_SYNCHRONOUS = 2      # espeak_Synth returns once every sample went through the callback
INITIALIZE_DONT_EXIT = 0x8000     # a data error returns an error code instead of exit()
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE = 1                    # espeakRATE: words per minute, 80..450
EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events); returning 0 continues.
SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def fail(message: str) -> None:
    print(f"espeak-ng: {message}", file=sys.stderr)
    raise SystemExit(2)


def speak(library: str, data_dir: str, voice: str, wpm: int, text: str) -> tuple[int, bytes]:
    lib = ctypes.CDLL(library)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [SynthCallback]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(), INITIALIZE_DONT_EXIT)
    if rate <= 0:
        fail(f"espeak_Initialize failed ({rate}) with data {data_dir!r}")
    samples = bytearray()

    def collect(wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        if wav and n > 0:
            samples.extend(ctypes.string_at(wav, 2 * n))
        return 0

    callback = SynthCallback(collect)  # kept referenced until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
        fail(f"no voice {voice!r} in {data_dir!r}")
    if lib.espeak_SetParameter(PARAM_RATE, wpm, 0) != EE_OK:
        fail(f"rate {wpm} words per minute refused")
    data = text.encode("utf-8") + b"\0"
    status = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
    if status != EE_OK:
        fail(f"espeak_Synth failed ({status})")
    return rate, bytes(samples)


def main(argv: list[str]) -> None:
    if len(argv) != 4:
        fail("usage: espeak_worker.py LIBRARY DATA_DIR VOICE WORDS_PER_MINUTE < text")
    library, data_dir, voice, wpm = argv
    rate, samples = speak(library, data_dir, voice, int(wpm), sys.stdin.buffer.read().decode("utf-8"))
    if sys.byteorder != "little":  # the reader expects little-endian int16
        import array

        a = array.array("h", samples)
        a.byteswap()
        samples = a.tobytes()
    sys.stdout.buffer.write(struct.pack("<i", rate) + samples)


if __name__ == "__main__":
    main(sys.argv[1:])
