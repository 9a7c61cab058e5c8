"""`python -m tests.support.clocked MOMENT ARGS...`: the `tallyql` command with the wall clock
set to MOMENT and running on (time_machine), for the servers and commands a test starts as processes
while the session runs at a set hour (`pytest --clock`), so that they see the tests' time."""

from __future__ import annotations

import sys
from datetime import datetime

import time_machine

from tallyql.cli import main

if __name__ == "__main__":
    with time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=True):
        main(sys.argv[2:])
