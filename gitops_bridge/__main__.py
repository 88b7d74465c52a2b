import sys

from gitops_bridge.cli import main

sys.exit(main())
