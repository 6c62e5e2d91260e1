"""Developer and technician tools (MicroPython runner, mpy checks; later flash.py)."""
