import sys

from medseg.cli import main

if __name__ == "__main__":  # not when a spawned worker process (medseg train --nproc) imports this module
    sys.exit(main())
