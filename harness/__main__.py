import sys

from harness.services import main

raise SystemExit(main(sys.argv[1:]))
