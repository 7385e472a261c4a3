"""lookalike.interrupts: an interrupt in a held section lands at its end; outside one, at once."""
from __future__ import annotations

import os
import signal
import time

import pytest

from lookalike import interrupts


def _signal_self() -> None:
    os.kill(os.getpid(), signal.SIGUSR1)
    for _ in range(100):  # the Python-level handler runs at the main thread's next check
        time.sleep(0.001)


def test_held_sections_defer_the_interrupt_to_their_end():
    previous = signal.signal(signal.SIGUSR1, interrupts.interrupt)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts.held():
                with interrupts.held():  # nested: only the outermost end raises
                    _signal_self()
                    done.append("inner")
                done.append("outer")
        assert done == ["inner", "outer"]
        with pytest.raises(KeyboardInterrupt):  # outside a section: at once
            _signal_self()
        with interrupts.held():  # nothing pending any more
            pass
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_an_error_in_a_held_section_is_not_replaced():
    previous = signal.signal(signal.SIGUSR1, interrupts.interrupt)
    try:
        with pytest.raises(ValueError):
            with interrupts.held():
                _signal_self()
                raise ValueError("kept")
        with interrupts.held():  # the interrupt went with the error: nothing left pending
            pass
    finally:
        signal.signal(signal.SIGUSR1, previous)
