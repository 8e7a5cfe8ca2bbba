import sys

from ftc.runtime.train import main

sys.exit(main())
