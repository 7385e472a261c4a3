"""lookalike.interrupts: an interrupt in a held section lands at its end; outside one, at once.

The handler is called as the signal would call it (a real SIGTERM to a real ``lookalike index`` is
tests/test_hostile.py::test_sigterm_stops_decoding_workers_and_keeps_committed_work); sending a signal to the test
process itself crashed the whole suite once libraries with their own signal handling were loaded."""
from __future__ import annotations

import signal

import pytest

from lookalike import interrupts


def _signal() -> None:
    interrupts.interrupt(signal.SIGTERM, None)


def test_held_sections_defer_the_interrupt_to_their_end():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            with interrupts.held():  # nested: only the outermost end raises
                _signal()
                done.append("inner")
            done.append("outer")
    assert done == ["inner", "outer"]
    with pytest.raises(KeyboardInterrupt):  # outside a section: at once
        _signal()
    with interrupts.held():  # nothing pending any more
        pass


def test_an_error_in_a_held_section_is_not_replaced():
    with pytest.raises(ValueError):
        with interrupts.held():
            _signal()
            raise ValueError("kept")
    with interrupts.held():  # the interrupt went with the error: nothing left pending
        pass
