import sys

from repp2p.cli import main

sys.exit(main())
