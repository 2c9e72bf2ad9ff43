import os
import sys

from .cli import main
from .distributed import launched_by_torchrun

code = main()
if launched_by_torchrun():
    # A process of a torchrun job leaves without C++ teardown: after the process group is gone,
    # gloo's threads destroyed at interpreter exit can abort it ("terminate called without an
    # active exception", SIGABRT), which the launcher reports as the job's failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
sys.exit(code)
