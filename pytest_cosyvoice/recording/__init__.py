"""Recording the engine's calls: `cosy_tts`'s call lifecycle and watchdog, thread and token attribution,
foreign engines, warning capture, and the A/B base side (in process or a worker interpreter) and its pairs."""
